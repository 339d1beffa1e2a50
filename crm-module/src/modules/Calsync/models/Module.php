<?php
/*
 * calsync CRM module: the module's own model. It has no records; its page is each user's
 * Office 365 panel, which the app menu (Tools) opens.
 */

class Calsync_Module_Model extends Vtiger_Module_Model {

	public function getDefaultViewName() {
		return 'Panel';
	}

	public function isQuickCreateSupported() {
		return false;
	}
}
