<?php
/*
 * calsync CRM module: saves the settings page (administrators only; a POST with vtiger's CSRF
 * token). An empty link key keeps the stored one. A refused save goes back to the page with
 * what was wrong and the values typed (never the key), kept in the session for one view.
 */

require_once 'modules/Calsync/lib/Web.php';

class Calsync_SaveSettings_Action extends Vtiger_Action_Controller {

	public function requiresPermission(Vtiger_Request $request) {
		return array();
	}

	public function checkPermission(Vtiger_Request $request) {
		if (!Calsync_Web::isAdmin()) {
			Calsync_Web::deny();
		}
		return true;
	}

	public function validateRequest(Vtiger_Request $request) {
		return $request->validateWriteAccess();
	}

	public function process(Vtiger_Request $request) {
		$stored = Calsync_Config::load();
		$input = array();
		foreach (Calsync_Config::names() as $name) {
			// Unpurified: vtiger's HTML purifier would change characters a key may hold (&, <, >). getRaw is not in every vtiger 7.
			$input[$name] = (string) (method_exists($request, 'getRaw') ? $request->getRaw($name) : (isset($_POST[$name]) ? $_POST[$name] : ''));
		}
		list($clean, $errors) = Calsync_Config::validate($input, $stored['link_key'] !== '');
		if (!isset($errors['integration_user']) && $clean['integration_user'] !== '' && !Calsync_Config::userExists($clean['integration_user'])) {
			$errors['integration_user'] = 'LBL_ERR_INTEGRATION_USER_UNKNOWN';
		}
		if ($errors) {
			// Back to the page through the session, not the URL: a link cannot fill the form.
			$typed = array();
			foreach (Calsync_Web::typedSettings() as $name) {
				$typed[$name] = $input[$name];
			}
			Vtiger_Session::set('calsync_refused', array('errors' => $errors, 'values' => $typed));
			Calsync_Web::redirect(Calsync::SETTINGS_URL);
			return;
		}
		Calsync_Config::save($clean);
		Calsync_Web::redirect(Calsync::SETTINGS_URL . '&saved=1&check=1');
	}
}
