<?php
/*
 * calsync CRM module: View details. Signs a status link for the user at the click (an hour:
 * long enough to read the page, short if it leaks) and sends the browser to calsync's status
 * page, which shows the journal of what calsync settled and offers its own fresh links.
 */

require_once 'modules/Calsync/lib/Web.php';

class Calsync_Details_Action extends Vtiger_Action_Controller {

	const LINK_SECONDS = 3600;

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
		Calsync_Web::redirect(Calsync_Signer::link($settings['auth_url'], $settings['link_key'], 'status',
			$settings['tenant'], $user, self::LINK_SECONDS, Calsync_Web::crmUrl(Calsync::PANEL_URL)));
	}
}
