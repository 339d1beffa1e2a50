<?php
/*
 * calsync CRM module: the settings page, for CRM administrators only. Shows calsync's auth and
 * webhook URLs, the tenant id and calsync's integration user, and of the link key only whether
 * one is set and its last four characters (the field is write-only). "Check" asks calsync whether it accepts them:
 * a status link for the administrator (auth URL, tenant, key) and a nudge (webhook URL).
 */

require_once 'modules/Calsync/lib/Web.php';
require_once 'modules/Calsync/lib/Status.php';
require_once 'modules/Calsync/lib/Nudger.php';

class Calsync_Settings_View extends Vtiger_Index_View {

	public function requiresPermission(Vtiger_Request $request) {
		return array();
	}

	public function checkPermission(Vtiger_Request $request) {
		if (!Calsync_Web::isAdmin()) {
			Calsync_Web::deny();
		}
		return true;
	}

	public function process(Vtiger_Request $request) {
		$viewer = $this->getViewer($request);
		$settings = Calsync_Config::load();
		// A refused save leaves what was wrong and what was typed (never the key) for one view.
		$refused = Vtiger_Session::get('calsync_refused', null);
		Vtiger_Session::set('calsync_refused', null);
		$errors = is_array($refused) ? $refused['errors'] : array();
		$values = array();
		foreach (Calsync_Web::typedSettings() as $name) {
			$values[$name] = $errors ? (string) $refused['values'][$name] : $settings[$name];
		}
		$fields = array();
		foreach ($values as $name => $value) {
			$key = strtoupper($name);
			$fields[] = array(
				'name' => $name,
				'type' => in_array($name, array('auth_url', 'webhook_url'), true) ? 'url' : 'text',
				'required' => in_array($name, Calsync_Config::required(), true),
				'value' => $value,
				'label' => vtranslate("LBL_$key", 'Calsync'),
				'help' => vtranslate("LBL_{$key}_HELP", 'Calsync'),
				'error' => isset($errors[$name]) ? vtranslate($errors[$name], 'Calsync') : '',
			);
		}
		$view = array(
			'fields' => $fields,
			'errors' => $errors,
			'key_hint' => Calsync_Config::keyHint($settings['link_key']),
			'saved' => $request->get('saved') === '1',
			'complete' => Calsync_Config::isComplete($settings),
			'check' => null,
		);
		if ($view['complete'] && $request->get('check') === '1') {
			$user = Calsync_Web::userName();
			$status = Calsync_Status::fetch($settings, $user);
			// A check asked for tries even while nudges are backing off after a failure.
			@unlink(Calsync_Nudger::backoffMarker($settings['webhook_url']));
			$view['check'] = array(
				'auth' => $status['outcome'],
				'webhook' => Calsync_Nudger::send($settings['webhook_url'], $settings['link_key'], $settings['tenant'], $user) ? 'ok' : 'failed',
			);
		}
		$viewer->assign('CALSYNC', $view);
		$viewer->view('Settings.tpl', $request->getModule());
	}
}
