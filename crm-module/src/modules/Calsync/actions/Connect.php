<?php
/*
 * calsync CRM module: Connect / Reconnect. Signs the user's connect link at the moment of the
 * click (calsync takes it for 15 minutes at most) with return_to back to the panel, and sends
 * the browser to it; calsync then sends it on to Microsoft's sign-in.
 */

require_once 'modules/Calsync/lib/Web.php';

class Calsync_Connect_Action extends Vtiger_Action_Controller {

	public function requiresPermission(Vtiger_Request $request) {
		return array();
	}

	public function checkPermission(Vtiger_Request $request) {
		if (!Calsync_Web::mayUse()) {
			Calsync_Web::deny();
		}
		return true;
	}

	public function process(Vtiger_Request $request) {
		$settings = Calsync_Config::load();
		$user = Calsync_Web::userName();
		if (!Calsync_Config::isComplete($settings) || !Calsync_Signer::isUsableUser($user)) {
			Calsync_Web::redirect(Calsync::PANEL_URL);
			return;
		}
		Calsync_Web::redirect(Calsync_Signer::link($settings['auth_url'], $settings['link_key'], 'connect',
			$settings['tenant'], $user, Calsync_Signer::CONNECT_SECONDS, Calsync_Web::crmUrl(Calsync::PANEL_URL)));
	}
}
