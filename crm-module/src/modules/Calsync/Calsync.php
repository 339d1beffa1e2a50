<?php
/*
 * calsync CRM module: install, update, enable, disable and uninstall (vtlib calls
 * vtlib_handler for each). What the module adds to vtiger:
 *  - the table vtiger_calsync_settings (its settings, the link key among them);
 *  - one event handler, CalsyncHandler, for vtiger.entity.beforesave, .aftersave and .afterdelete
 *    (the manifest's <events> registers it on install; vtiger's update skips <events>, so this
 *    registers it again);
 *  - a "Office 365" link in the Calendar's left menu (a SIDEBARLINK of the Calendar module);
 *  - two Settings entries: the settings page (Extensions) and the panel (My Preferences, which
 *    vtiger shows to administrators).
 * Disabling the module in Module Manager deactivates the handler and hides the link; enabling
 * it undoes that. Uninstalling (tools/uninstall.php) removes all of it, the stored key included.
 */

class Calsync {

	const HANDLER_CLASS = 'CalsyncHandler';
	const HANDLER_PATH = 'modules/Calsync/handlers/CalsyncHandler.php';
	const PANEL_URL = 'index.php?module=Calsync&view=Panel';
	const SETTINGS_URL = 'index.php?module=Calsync&view=Settings';
	const CALENDAR_LINK_LABEL = 'Office 365';
	const SETTINGS_FIELD = 'Office 365 (calsync)';
	const PANEL_FIELD = 'Office 365';

	public static function events() {
		return array('vtiger.entity.beforesave', 'vtiger.entity.aftersave', 'vtiger.entity.afterdelete');
	}

	public function vtlib_handler($moduleName, $eventType) {
		require_once 'modules/Calsync/lib/Config.php';
		switch ($eventType) {
			case 'module.postinstall':
			case 'module.postupdate':
				self::setUp();
				break;
			case 'module.enabled':
				self::setUp();
				break;
			case 'module.disabled':
				self::handlerManager()->setHandlerInActive(self::HANDLER_CLASS);
				self::removeCalendarLink();
				break;
			case 'module.preuninstall':
				self::tearDown();
				break;
		}
	}

	private static function handlerManager() {
		require_once 'include/events/include.inc';
		return new VTEventsManager(PearDatabase::getInstance());
	}

	/** Everything the module needs, idempotent (install, update and enable). */
	public static function setUp() {
		Calsync_Config::createTable();
		$manager = self::handlerManager();
		foreach (self::events() as $event) {
			$manager->registerHandler($event, self::HANDLER_PATH, self::HANDLER_CLASS);
		}
		$manager->setModuleForHandler('Calsync', self::HANDLER_CLASS);
		$manager->setHandlerActive(self::HANDLER_CLASS);

		include_once 'vtlib/Vtiger/Module.php';
		$calendar = Vtiger_Module::getInstance('Calendar');
		if ($calendar) {
			// addLink adds nothing when the same link is there.
			$calendar->addLink('SIDEBARLINK', self::CALENDAR_LINK_LABEL, self::PANEL_URL);
		}
		self::addSettingsField(array('LBL_EXTENSIONS', 'LBL_INTEGRATION', 'LBL_OTHER_SETTINGS'), self::SETTINGS_FIELD, self::SETTINGS_URL);
		self::addSettingsField(array('LBL_MY_PREFERENCES'), self::PANEL_FIELD, self::PANEL_URL);
		// The module's place in the app menu (Tools), which the manifest's <parent> sets on install.
		if (class_exists('Settings_MenuEditor_Module_Model') || is_file('modules/Settings/MenuEditor/models/Module.php')) {
			require_once 'modules/Settings/MenuEditor/models/Module.php';
			Settings_MenuEditor_Module_Model::addModuleToApp('Calsync', 'Tools');
		}
		// vtiger keeps each user's module permissions in files (user_privileges/) that an import
		// does not rewrite: without this, only administrators could open the panel.
		if (!function_exists('createUserPrivilegesfile')) {
			require_once 'modules/Users/CreateUserPrivilegeFile.php';
		}
		require_once 'include/utils/VtlibUtils.php';
		vtlib_RecreateUserPrivilegeFiles();
	}

	/** Removes what setUp() added, and the settings (the link key with them). */
	public static function tearDown() {
		self::handlerManager()->unregisterHandler(self::HANDLER_CLASS);
		self::removeCalendarLink();
		$db = PearDatabase::getInstance();
		$db->pquery('DELETE FROM vtiger_settings_field WHERE linkto IN (?, ?)', array(self::SETTINGS_URL, self::PANEL_URL));
		$tab = $db->pquery('SELECT tabid FROM vtiger_tab WHERE name = ?', array('Calsync'));
		if ($tab && $db->num_rows($tab)) {
			$db->pquery('DELETE FROM vtiger_app2tab WHERE tabid = ?', array($db->query_result($tab, 0, 'tabid')));
		}
		Calsync_Config::dropTable();
	}

	private static function removeCalendarLink() {
		include_once 'vtlib/Vtiger/Module.php';
		$calendar = Vtiger_Module::getInstance('Calendar');
		if ($calendar) {
			$calendar->deleteLink('SIDEBARLINK', self::CALENDAR_LINK_LABEL, self::PANEL_URL);
		}
	}

	/** A Settings menu entry in the first of $blocks that exists (once). */
	private static function addSettingsField(array $blocks, $name, $url) {
		$db = PearDatabase::getInstance();
		$exists = $db->pquery('SELECT 1 FROM vtiger_settings_field WHERE linkto = ?', array($url));
		if ($exists && $db->num_rows($exists)) {
			return;
		}
		foreach ($blocks as $label) {
			$block = $db->pquery('SELECT blockid FROM vtiger_settings_blocks WHERE label = ?', array($label));
			if (!$block || !$db->num_rows($block)) {
				continue;
			}
			$blockId = $db->query_result($block, 0, 'blockid');
			$seq = $db->pquery('SELECT MAX(sequence) AS seq FROM vtiger_settings_field WHERE blockid = ?', array($blockId));
			$sequence = (int) $db->query_result($seq, 0, 'seq') + 1;
			$db->pquery('INSERT INTO vtiger_settings_field (fieldid, blockid, name, iconpath, description, linkto, sequence, active, pinned)'
				. ' VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0)',
				array($db->getUniqueID('vtiger_settings_field'), $blockId, $name, '', '', $url, $sequence));
			return;
		}
	}
}
