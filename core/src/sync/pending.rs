//! Updates stored with their link before they leave (docs/design.md §4). A step stores its
//! link with the values it is about to send before its first update, so that an update which
//! lands while the link recording it is never stored (the store refusing to the run's end, a
//! crash) is still known for calsync's own by the next run — not taken for a user's edit of
//! that side and copied over a later edit of the other.

use serde::{Deserialize, Serialize};

use super::model::{AsStored, FieldSet, Link, Side};
use super::policy::Policy;
use crate::event::CalendarEvent;

/// The updates a step is sending, kept on its link until the link that records them is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// What the updates send: the merged values, with the versions of each side they were
    /// planned from (`modified.crm`, `ids.outlook_change_key`).
    pub sent: CalendarEvent,
    /// The fields sent to each side (empty: that side is not updated).
    #[serde(default, skip_serializing_if = "no_fields")]
    pub crm: FieldSet,
    #[serde(default, skip_serializing_if = "no_fields")]
    pub outlook: FieldSet,
}

fn no_fields(fields: &FieldSet) -> bool {
    fields.is_empty()
}

/// Where one side's update stands, by what the side holds now.
enum Landing {
    /// The side is still at the version the update was planned from.
    No,
    /// The side holds every field as sent.
    Yes,
    /// The side moved on and holds something else: the update landed and a user edited since,
    /// or a user's edit kept it from landing.
    Unknown,
}

impl PendingUpdate {
    pub fn fields(&self, side: Side) -> FieldSet {
        match side {
            Side::Crm => self.crm,
            Side::Outlook => self.outlook,
        }
    }

    /// `link` (which carries this) as the sides show it now, without the pending update: an
    /// update that landed is taken into the base and both sides' forms, as the link its step
    /// would have stored; one that did not leaves the link as it was. `crm` and `outlook` are
    /// what each side reported in this run: a side that reported nothing was not updated (a
    /// landed update is a change its feed reports, and the cursors wait for a step that did not
    /// finish). A side that moved on but holds something else than was sent counts as having
    /// changed those fields from the values sent, so that a disagreement with the other side is
    /// a journalled conflict rather than a silent choice.
    pub(crate) fn settle(
        &self,
        link: &Link,
        crm: Option<&CalendarEvent>,
        outlook: Option<&CalendarEvent>,
        policy: &Policy,
    ) -> Link {
        let crm_sent = policy.crm_storage.form(&self.sent);
        let mut base = link.base.clone();
        let mut held_crm = link.as_stored.on(Side::Crm, &link.base).clone();
        let mut held_outlook = link.as_stored.on(Side::Outlook, &link.base).clone();
        for (side, now) in [(Side::Crm, crm), (Side::Outlook, outlook)] {
            let fields = self.fields(side);
            let Some(now) = now.filter(|_| !fields.is_empty()) else {
                continue;
            };
            let sent = match side {
                Side::Crm => &crm_sent,
                Side::Outlook => &self.sent,
            };
            match self.landing(side, fields, sent, now) {
                Landing::No => {}
                Landing::Yes => {
                    // Both sides hold the value now: the side written, and the side it came
                    // from (the merge writes a side only with the other's value).
                    for field in fields.iter() {
                        base.copy_field(&self.sent, field);
                        held_crm.copy_field(&crm_sent, field);
                        held_outlook.copy_field(&self.sent, field);
                    }
                }
                Landing::Unknown => {
                    let held = match side {
                        Side::Crm => &mut held_crm,
                        Side::Outlook => &mut held_outlook,
                    };
                    for field in fields.iter() {
                        held.copy_field(sent, field);
                    }
                }
            }
        }
        let mut settled = link.clone();
        settled.pending = None;
        settled.base = base;
        settled.as_stored = AsStored::default();
        settled
            .as_stored
            .note(Side::Crm, &held_crm, &settled.base, policy.crm_fields);
        settled.as_stored.note(
            Side::Outlook,
            &held_outlook,
            &settled.base,
            policy.outlook_fields,
        );
        settled
    }

    fn landing(
        &self,
        side: Side,
        fields: FieldSet,
        sent: &CalendarEvent,
        now: &CalendarEvent,
    ) -> Landing {
        let unmoved = match side {
            Side::Crm => {
                self.sent.modified.crm.is_some() && now.modified.crm == self.sent.modified.crm
            }
            Side::Outlook => {
                self.sent.ids.outlook_change_key.is_some()
                    && now.ids.outlook_change_key == self.sent.ids.outlook_change_key
            }
        };
        if unmoved {
            Landing::No
        } else if fields.iter().all(|field| now.same_field(sent, field)) {
            Landing::Yes
        } else {
            Landing::Unknown
        }
    }
}
