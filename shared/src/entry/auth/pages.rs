//! The auth function's pages: small, server-rendered, accessible, in Spanish or English by
//! `Accept-Language`.

use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};

use crate::entry::html::{self, document, Layout};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Es,
    En,
}

impl Lang {
    /// The supported language the browser prefers most (q-values honoured); Spanish when the
    /// header names neither, since the CRM's users are mostly Spanish speakers.
    pub fn from_accept_language(header: Option<&str>) -> Self {
        let Some(header) = header else {
            return Lang::Es;
        };
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("es") => Lang::Es,
                Some("en") => Lang::En,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l).unwrap_or(Lang::Es)
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Es => "es",
            Lang::En => "en",
        }
    }
}

/// Every sentence a page can show, in both languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    AppName,
    BadRequestTitle,
    BadRequest,
    LinkInvalidTitle,
    LinkInvalid,
    LinkExpired,
    AskCrmForNewLink,
    TenantUnknown,
    ReturnToRefused,
    StateUnknownTitle,
    StateUnknown,
    OtherBrowserTitle,
    OtherBrowser,
    EmailMismatchTitle,
    EmailMismatch,
    CrmUnreachable,
    ConsentDeniedTitle,
    ConsentDenied,
    MicrosoftErrorTitle,
    MicrosoftError,
    WrongTenantTitle,
    WrongTenant,
    SignInFailedTitle,
    TokenTimeout,
    TokenUnavailable,
    TokenRefused,
    AlreadyLinkedTitle,
    AlreadyLinked,
    InternalTitle,
    Internal,
    ConnectedTitle,
    Connected,
    FirstSyncQueued,
    FirstSyncLater,
    BackToCrm,
    AdminConsentTitle,
    AdminConsentDone,
    OnboardedDone,
    ConsentRefusedTitle,
    ConsentRefused,
    NotReadyTitle,
    AwaitingConsent,
    AccessRevoked,
    DisconnectedTitle,
    Disconnected,
    NotConnectedTitle,
    NotConnected,
    StatusTitle,
    StatusConnected,
    StatusDisconnected,
    StatusReconnect,
    StatusNever,
    MicrosoftAccount,
    ConnectedSince,
    LastSyncToCrm,
    LastSyncToOutlook,
    LinkedEvents,
    NoSyncYet,
    Problems,
    NoProblems,
    Journal,
    JournalIntro,
    NoJournal,
    JournalWhen,
    JournalEvent,
    JournalWhat,
    JournalKept,
    JournalNotKept,
    JournalDeleted,
    ConnectAction,
    ReconnectAction,
    DisconnectAction,
    NotFoundTitle,
    NotFound,
    MethodNotAllowed,
}

pub fn text(lang: Lang, msg: Msg) -> &'static str {
    use Msg::*;
    match (msg, lang) {
        (AppName, _) => "calsync",
        (BadRequestTitle, Lang::Es) => "Solicitud no válida",
        (BadRequestTitle, Lang::En) => "Invalid request",
        (BadRequest, Lang::Es) => "Al enlace le faltan datos o tiene datos no válidos.",
        (BadRequest, Lang::En) => "The link is missing information or has invalid information.",
        (LinkInvalidTitle, Lang::Es) => "Enlace no válido",
        (LinkInvalidTitle, Lang::En) => "Invalid link",
        (LinkInvalid, Lang::Es) => "Este enlace no es válido o ha sido modificado.",
        (LinkInvalid, Lang::En) => "This link is not valid or has been altered.",
        (LinkExpired, Lang::Es) => "Este enlace ha caducado.",
        (LinkExpired, Lang::En) => "This link has expired.",
        (AskCrmForNewLink, Lang::Es) => "Vuelva al CRM y abra de nuevo la conexión con Office 365 para obtener un enlace nuevo.",
        (AskCrmForNewLink, Lang::En) => "Go back to the CRM and open the Office 365 connection again to get a new link.",
        (TenantUnknown, Lang::Es) => "Esta organización no está dada de alta en calsync. Contacte con su administrador.",
        (TenantUnknown, Lang::En) => "This organisation is not set up in calsync. Contact your administrator.",
        (ReturnToRefused, Lang::Es) => "La dirección de vuelta no pertenece a su CRM.",
        (ReturnToRefused, Lang::En) => "The return address does not belong to your CRM.",
        (StateUnknownTitle, Lang::Es) => "Inicio de sesión caducado",
        (StateUnknownTitle, Lang::En) => "Sign-in expired",
        (StateUnknown, Lang::Es) => "Este inicio de sesión ya se usó o caducó (dura 10 minutos). Empiece de nuevo desde el CRM.",
        (StateUnknown, Lang::En) => "This sign-in was already used or has expired (it lasts 10 minutes). Start again from the CRM.",
        (ConsentDeniedTitle, Lang::Es) => "Permiso no concedido",
        (ConsentDeniedTitle, Lang::En) => "Permission not granted",
        (ConsentDenied, Lang::Es) => "No se concedió a calsync acceso a su calendario de Outlook, así que no se ha conectado nada. Puede intentarlo de nuevo cuando quiera.",
        (ConsentDenied, Lang::En) => "calsync was not given access to your Outlook calendar, so nothing was connected. You can try again at any time.",
        (MicrosoftErrorTitle, Lang::Es) => "Microsoft no completó el inicio de sesión",
        (MicrosoftErrorTitle, Lang::En) => "Microsoft did not complete the sign-in",
        (MicrosoftError, Lang::Es) => "Microsoft devolvió un error. Inténtelo de nuevo; si se repite, dé este código a su administrador:",
        (MicrosoftError, Lang::En) => "Microsoft returned an error. Try again; if it happens again, give your administrator this code:",
        (WrongTenantTitle, Lang::Es) => "Cuenta de otra organización",
        (WrongTenantTitle, Lang::En) => "Account from another organisation",
        (WrongTenant, Lang::Es) => "La cuenta de Microsoft con la que ha entrado no pertenece a la organización de este CRM. Entre con su cuenta de trabajo.",
        (WrongTenant, Lang::En) => "The Microsoft account you signed in with does not belong to this CRM's organisation. Sign in with your work account.",
        (SignInFailedTitle, Lang::Es) => "No se pudo completar la conexión",
        (SignInFailedTitle, Lang::En) => "The connection could not be completed",
        (TokenTimeout, Lang::Es) => "Microsoft tardó demasiado en responder. No se ha guardado nada; inténtelo de nuevo en unos minutos.",
        (TokenTimeout, Lang::En) => "Microsoft took too long to answer. Nothing was saved; try again in a few minutes.",
        (TokenUnavailable, Lang::Es) => "No se pudo hablar con Microsoft. No se ha guardado nada; inténtelo de nuevo en unos minutos.",
        (TokenUnavailable, Lang::En) => "calsync could not reach Microsoft. Nothing was saved; try again in a few minutes.",
        (TokenRefused, Lang::Es) => "Microsoft rechazó la conexión. No se ha guardado nada. Si se repite, su administrador debe revisar el registro de la aplicación. Código:",
        (TokenRefused, Lang::En) => "Microsoft refused the connection. Nothing was saved. If it happens again, your administrator should check the app registration. Code:",
        (AlreadyLinkedTitle, Lang::Es) => "Cuenta ya conectada",
        (AlreadyLinkedTitle, Lang::En) => "Account already connected",
        (AlreadyLinked, Lang::Es) => "Esta cuenta de Microsoft ya está conectada a otro usuario del CRM. Desconéctela allí primero.",
        (AlreadyLinked, Lang::En) => "This Microsoft account is already connected to another CRM user. Disconnect it there first.",
        (InternalTitle, Lang::Es) => "Error del servicio",
        (InternalTitle, Lang::En) => "Service error",
        (Internal, Lang::Es) => "calsync no pudo terminar la operación. Inténtelo de nuevo en unos minutos.",
        (Internal, Lang::En) => "calsync could not finish the operation. Try again in a few minutes.",
        (ConnectedTitle, Lang::Es) => "Calendario conectado",
        (ConnectedTitle, Lang::En) => "Calendar connected",
        (Connected, Lang::Es) => "Su calendario de Outlook está conectado a su usuario del CRM:",
        (Connected, Lang::En) => "Your Outlook calendar is connected to your CRM user:",
        (FirstSyncQueued, Lang::Es) => "La primera sincronización ya ha empezado; sus citas aparecerán en ambos lados en unos minutos.",
        (FirstSyncQueued, Lang::En) => "The first sync has started; your meetings will appear on both sides within minutes.",
        (FirstSyncLater, Lang::Es) => "La primera sincronización empezará en la próxima ronda programada.",
        (FirstSyncLater, Lang::En) => "The first sync will start at the next scheduled round.",
        (BackToCrm, Lang::Es) => "Volver al CRM",
        (BackToCrm, Lang::En) => "Back to the CRM",
        (AdminConsentTitle, Lang::Es) => "Consentimiento de administrador concedido",
        (AdminConsentTitle, Lang::En) => "Admin consent granted",
        (AdminConsentDone, Lang::Es) => "calsync puede sincronizar los calendarios de esta organización sin que cada usuario inicie sesión.",
        (AdminConsentDone, Lang::En) => "calsync can now sync this organisation's calendars without each user signing in.",
        (OnboardedDone, Lang::Es) => "Su organización ha dado su consentimiento a calsync. Sus usuarios ya pueden conectar su calendario de Outlook desde el CRM.",
        (OnboardedDone, Lang::En) => "Your organisation has consented to calsync. Its users can now connect their Outlook calendars from the CRM.",
        (ConsentRefusedTitle, Lang::Es) => "Consentimiento no aceptado",
        (ConsentRefusedTitle, Lang::En) => "Consent not accepted",
        (ConsentRefused, Lang::Es) => "calsync no ha activado su organización. Motivo:",
        (ConsentRefused, Lang::En) => "calsync did not activate your organisation. Reason:",
        (NotReadyTitle, Lang::Es) => "Office 365 no está disponible todavía",
        (NotReadyTitle, Lang::En) => "Office 365 is not available yet",
        (AwaitingConsent, Lang::Es) => "El administrador de Microsoft 365 de su organización todavía no ha dado su consentimiento a calsync. Avise al administrador del CRM.",
        (AwaitingConsent, Lang::En) => "Your organisation's Microsoft 365 administrator has not consented to calsync yet. Tell your CRM administrator.",
        (AccessRevoked, Lang::Es) => "El administrador de Microsoft 365 de su organización ha retirado el acceso de calsync. Avise al administrador del CRM.",
        (AccessRevoked, Lang::En) => "Your organisation's Microsoft 365 administrator has removed calsync's access. Tell your CRM administrator.",
        (DisconnectedTitle, Lang::Es) => "Calendario desconectado",
        (DisconnectedTitle, Lang::En) => "Calendar disconnected",
        (Disconnected, Lang::Es) => "calsync ha dejado de sincronizar su calendario y ha olvidado su acceso. Sus citas no se han borrado.",
        (Disconnected, Lang::En) => "calsync has stopped syncing your calendar and forgotten its access. None of your meetings were deleted.",
        (NotConnectedTitle, Lang::Es) => "No conectado",
        (NotConnectedTitle, Lang::En) => "Not connected",
        (NotConnected, Lang::Es) => "Este usuario del CRM no tiene ningún calendario de Outlook conectado.",
        (NotConnected, Lang::En) => "This CRM user has no Outlook calendar connected.",
        (StatusTitle, Lang::Es) => "Estado de la sincronización",
        (StatusTitle, Lang::En) => "Sync status",
        (StatusConnected, Lang::Es) => "Conectado",
        (StatusConnected, Lang::En) => "Connected",
        (StatusDisconnected, Lang::Es) => "Desconectado",
        (StatusDisconnected, Lang::En) => "Disconnected",
        (StatusReconnect, Lang::Es) => "Hay que volver a conectar: Microsoft ya no acepta el acceso guardado. La sincronización está en pausa hasta entonces.",
        (StatusReconnect, Lang::En) => "Reconnection needed: Microsoft no longer accepts the saved access. Sync is paused until then.",
        (StatusNever, Lang::Es) => "Nunca conectado",
        (StatusNever, Lang::En) => "Never connected",
        (MicrosoftAccount, Lang::Es) => "Cuenta de Microsoft",
        (MicrosoftAccount, Lang::En) => "Microsoft account",
        (ConnectedSince, Lang::Es) => "Conectado desde",
        (ConnectedSince, Lang::En) => "Connected since",
        (LastSyncToCrm, Lang::Es) => "Última sincronización Outlook → CRM",
        (LastSyncToCrm, Lang::En) => "Last sync Outlook → CRM",
        (LastSyncToOutlook, Lang::Es) => "Última sincronización CRM → Outlook",
        (LastSyncToOutlook, Lang::En) => "Last sync CRM → Outlook",
        (LinkedEvents, Lang::Es) => "Eventos sincronizados",
        (LinkedEvents, Lang::En) => "Events kept in sync",
        (NoSyncYet, Lang::Es) => "todavía ninguna",
        (NoSyncYet, Lang::En) => "none yet",
        (Problems, Lang::Es) => "Avisos",
        (Problems, Lang::En) => "Notices",
        (NoProblems, Lang::Es) => "Todo en orden.",
        (NoProblems, Lang::En) => "All good.",
        (EmailMismatchTitle, Lang::Es) => "Use su cuenta de trabajo",
        (EmailMismatchTitle, Lang::En) => "Use your work account",
        (EmailMismatch, Lang::Es) => "Su organización solo permite conectar la cuenta de Microsoft cuya dirección es su correo en el CRM. Ha iniciado sesión como:",
        (EmailMismatch, Lang::En) => "Your organisation only allows connecting the Microsoft account whose address is your e-mail in the CRM. You signed in as:",
        (CrmUnreachable, Lang::Es) => "No se ha podido consultar el CRM para comprobar su correo. No se ha guardado nada; inténtelo de nuevo en unos minutos.",
        (CrmUnreachable, Lang::En) => "The CRM could not be asked to check your e-mail. Nothing was saved; try again in a few minutes.",
        (OtherBrowserTitle, Lang::Es) => "Inicie la conexión en este navegador",
        (OtherBrowserTitle, Lang::En) => "Start the connection in this browser",
        (OtherBrowser, Lang::Es) => "Esta conexión se empezó en otro navegador, o el navegador no guarda cookies. Por seguridad solo puede terminarla el navegador que la empezó. Vuelva al CRM y pulse Conectar de nuevo aquí.",
        (OtherBrowser, Lang::En) => "This connection was started in another browser, or this browser keeps no cookies. For safety only the browser that started it can finish it. Go back to the CRM and press Connect again here.",
        (Journal, Lang::Es) => "Cambios que calsync tuvo que decidir",
        (Journal, Lang::En) => "Changes calsync had to settle",
        (JournalIntro, Lang::Es) => "Cuando el CRM y Outlook cambian lo mismo a la vez, o un cambio no puede pasar al otro lado, calsync decide y guarda aquí el valor que no se quedó.",
        (JournalIntro, Lang::En) => "When the CRM and Outlook change the same thing at once, or a change cannot go to the other side, calsync settles it and keeps here the value that was not kept.",
        (NoJournal, Lang::Es) => "Ninguno.",
        (NoJournal, Lang::En) => "None.",
        (JournalWhen, Lang::Es) => "Cuándo",
        (JournalWhen, Lang::En) => "When",
        (JournalEvent, Lang::Es) => "Evento",
        (JournalEvent, Lang::En) => "Event",
        (JournalWhat, Lang::Es) => "Qué",
        (JournalWhat, Lang::En) => "What",
        (JournalKept, Lang::Es) => "Se quedó",
        (JournalKept, Lang::En) => "Kept",
        (JournalNotKept, Lang::Es) => "No se quedó",
        (JournalNotKept, Lang::En) => "Not kept",
        (JournalDeleted, Lang::Es) => "(eliminado)",
        (JournalDeleted, Lang::En) => "(deleted)",
        (ConnectAction, Lang::Es) => "Conectar con Office 365",
        (ConnectAction, Lang::En) => "Connect to Office 365",
        (ReconnectAction, Lang::Es) => "Volver a conectar",
        (ReconnectAction, Lang::En) => "Reconnect",
        (DisconnectAction, Lang::Es) => "Desconectar",
        (DisconnectAction, Lang::En) => "Disconnect",
        (NotFoundTitle, Lang::Es) => "Página no encontrada",
        (NotFoundTitle, Lang::En) => "Page not found",
        (NotFound, Lang::Es) => "Esta dirección no existe.",
        (NotFound, Lang::En) => "This address does not exist.",
        (MethodNotAllowed, Lang::Es) => "Esta dirección no admite ese método.",
        (MethodNotAllowed, Lang::En) => "This address does not accept that method.",
    }
}

/// A page under construction: a title and blocks of markup, in one language.
pub struct Page {
    lang: Lang,
    status: StatusCode,
    title: Msg,
    blocks: Vec<Markup>,
}

impl Page {
    pub fn new(lang: Lang, status: StatusCode, title: Msg) -> Self {
        Self {
            lang,
            status,
            title,
            blocks: Vec::new(),
        }
    }

    pub fn lang(&self) -> Lang {
        self.lang
    }

    /// A paragraph of one sentence, optionally followed by a value shown as code.
    pub fn para(mut self, msg: Msg, value: Option<&str>) -> Self {
        let sentence = text(self.lang, msg);
        self.blocks.push(html! {
            p {
                (sentence)
                @if let Some(value) = value { " " code { (value) } }
            }
        });
        self
    }

    /// A block built by the caller.
    pub fn block(mut self, markup: Markup) -> Self {
        self.blocks.push(markup);
        self
    }

    pub fn link(mut self, msg: Msg, href: &str) -> Self {
        let label = text(self.lang, msg);
        self.blocks
            .push(html! { p { a.button href=(href) { (label) } } });
        self
    }

    pub fn render(self) -> Response {
        let layout = Layout {
            lang: self.lang.code(),
            title: text(self.lang, self.title),
            wide: false,
            refresh_secs: None,
        };
        let blocks = self.blocks;
        html::page(
            self.status,
            document(&layout, maud::html! { @for block in &blocks { (block) } }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_follows_accept_language() {
        assert_eq!(
            Lang::from_accept_language(Some("en-GB,en;q=0.9,es;q=0.8")),
            Lang::En
        );
        assert_eq!(
            Lang::from_accept_language(Some("fr-FR,es;q=0.5,en;q=0.4")),
            Lang::Es
        );
        assert_eq!(
            Lang::from_accept_language(Some("en;q=0.2, es-ES")),
            Lang::Es
        );
        assert_eq!(Lang::from_accept_language(Some("de")), Lang::Es);
        assert_eq!(Lang::from_accept_language(None), Lang::Es);
    }

    #[tokio::test]
    async fn pages_escape_values() {
        let page = Page::new(Lang::En, StatusCode::BAD_REQUEST, Msg::MicrosoftErrorTitle)
            .para(Msg::MicrosoftError, Some("<script>"))
            .render();
        assert_eq!(page.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(page.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("&lt;script&gt;"));
        assert!(!body.contains("<script>"));
        assert!(body.contains("<html lang=\"en\">"));
    }
}
