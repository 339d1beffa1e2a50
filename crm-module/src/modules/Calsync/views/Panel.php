<?php
/*
 * calsync CRM module: the signed-in user's "Office 365 calendar" panel. It asks calsync for the
 * user's state (server to server, a status link signed for this request, 2 s at most) and
 * offers Connect / Reconnect and View details (module actions that sign their link at the
 * click) and Disconnect (a form that posts to calsync, signed for an hour). Without calsync it
 * says so and still offers the buttons.
 */

require_once 'modules/Calsync/lib/Web.php';
require_once 'modules/Calsync/lib/Status.php';

class Calsync_Panel_View extends Vtiger_Index_View {

	public function requiresPermission(Vtiger_Request $request) {
		return array();
	}

	public function checkPermission(Vtiger_Request $request) {
		if (!Calsync_Web::mayUse()) {
			Calsync_Web::deny();
		}
		return true;
	}

	/**
	 * No Referer check: this page only shows the user's own state, and calsync sends the
	 * browser back here after a sign-in (from Microsoft's pages).
	 */
	public function validateRequest(Vtiger_Request $request) {
	}

	public function process(Vtiger_Request $request) {
		$viewer = $this->getViewer($request);
		$settings = Calsync_Config::load();
		$user = Calsync_Web::userName();
		$panelUrl = Calsync_Web::crmUrl(Calsync::PANEL_URL);

		$state = 'ok';
		$status = null;
		if (!Calsync_Config::isComplete($settings)) {
			$state = 'not_configured';
		} elseif (!Calsync_Signer::isUsableUser($user)) {
			$state = 'unusable_user';
		} else {
			$fetched = Calsync_Status::fetch($settings, $user);
			$state = $fetched['outcome'];
			$status = $fetched['status'];
		}

		$zone = Users_Record_Model::getCurrentUserModel()->get('time_zone');
		$view = array(
			'state' => $state,
			'user' => $user,
			'status' => $status ? $status['status'] : '',
			'status_label' => $status ? vtranslate('LBL_STATUS_' . strtoupper($status['status']), 'Calsync') : '',
			'account' => $status ? $status['microsoft_account'] : '',
			'connected_at' => $status ? Calsync_Status::formatTime($status['connected_at'], $zone) : '',
			'to_crm' => $status ? Calsync_Status::formatTime($status['last_sync_to_crm_at'], $zone) : '',
			'to_outlook' => $status ? Calsync_Status::formatTime($status['last_sync_to_outlook_at'], $zone) : '',
			'linked_events' => $status && $status['linked_events'] !== null ? (string) $status['linked_events'] : '',
			'problems' => array(),
			'just_connected' => $request->get('calsync') === 'connected',
		);
		if ($status) {
			foreach ($status['problems'] as $problem) {
				$view['problems'][] = array(
					'code' => $problem['code'],
					'detail' => $problem['detail'],
					'since' => Calsync_Status::formatTime($problem['since'], $zone),
				);
			}
		}

		// The buttons calsync's own status page would offer; all of them when calsync did not
		// answer (it may still answer the browser), none of them when it refused the signature.
		$usable = in_array($state, array('ok', 'unreachable', 'error'), true);
		$known = ($state === 'ok');
		$view['show_connect'] = $usable && !($known && $view['status'] === 'connected');
		$view['connect_label'] = $view['status'] === 'reconnect_required' ? 'LBL_RECONNECT' : 'LBL_CONNECT';
		$view['show_details'] = $usable;
		$view['show_disconnect'] = $usable && (!$known || in_array($view['status'], array('connected', 'reconnect_required'), true));
		$view['connect_url'] = 'index.php?module=Calsync&action=Connect';
		$view['details_url'] = 'index.php?module=Calsync&action=Details';
		$view['disconnect_action'] = '';
		$view['disconnect_fields'] = array();
		if ($view['show_disconnect']) {
			$view['disconnect_action'] = Calsync_Signer::joinUrl($settings['auth_url'], 'disconnect');
			$view['disconnect_fields'] = Calsync_Signer::freshLinkFields($settings['link_key'], 'disconnect',
				$settings['tenant'], $user, Calsync_Signer::DISCONNECT_SECONDS, $panelUrl);
		}
		$view['settings_url'] = Calsync_Web::isAdmin() ? Calsync::SETTINGS_URL : '';

		$viewer->assign('CALSYNC', $view);
		$viewer->view('Panel.tpl', $request->getModule());
	}
}
