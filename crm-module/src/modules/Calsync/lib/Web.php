<?php
/*
 * calsync CRM module: what the module's pages and actions share inside vtiger.
 */

require_once dirname(__FILE__) . '/Config.php';
require_once dirname(__FILE__) . '/Signer.php';
require_once dirname(__FILE__) . '/../Calsync.php';

class Calsync_Web {

	/** The signed-in user may use the module (it is active and their profile allows it). */
	public static function mayUse() {
		if (!vtlib_isModuleActive('Calsync')) {
			return false;
		}
		$privileges = Users_Privileges_Model::getCurrentUserPrivilegesModel();
		return $privileges->hasModulePermission(getTabid('Calsync'));
	}

	/** The settings the settings page shows as typed (all but the write-only key), in order. */
	public static function typedSettings() {
		return array('auth_url', 'webhook_url', 'tenant', 'integration_user');
	}

	public static function isAdmin() {
		return Users_Record_Model::getCurrentUserModel()->isAdminUser();
	}

	public static function deny() {
		throw new AppException(vtranslate('LBL_PERMISSION_DENIED'));
	}

	/** The signed-in user's vtiger login, the name calsync knows them by. */
	public static function userName() {
		return (string) Users_Record_Model::getCurrentUserModel()->get('user_name');
	}

	/** A page of the module on the CRM's own origin ($site_URL), for calsync's return_to. */
	public static function crmUrl($relative) {
		global $site_URL;
		return rtrim((string) $site_URL, '/') . '/' . $relative;
	}

	public static function redirect($url) {
		header('Location: ' . $url, true, 303);
		header('Cache-Control: no-store');
	}
}
