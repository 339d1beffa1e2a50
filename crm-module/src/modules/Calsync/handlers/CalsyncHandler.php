<?php
/*
 * calsync CRM module: the event handler vtiger calls around every record save and delete.
 * For calendar events (activity type other than Task) it
 *  - before a save: keeps the invitees of a webservice save that does not name them
 *    (Calsync_Invitees), and notes the event's owner and type as they were;
 *  - after a save or a delete: queues a nudge for the event's owner, and for its previous
 *    owner when the save reassigned it (Calsync_Nudger sends them at the end of the request),
 *    unless the save is calsync's own (its integration user, through the webservice).
 * Nothing here may break a save: every error is caught and logged.
 */

require_once 'include/events/VTEventHandler.inc';
require_once dirname(__FILE__) . '/../lib/Invitees.php';
require_once dirname(__FILE__) . '/../lib/Nudger.php';
require_once dirname(__FILE__) . '/../lib/Config.php';

class CalsyncHandler extends VTEventHandler {

	/** Per record being saved in this request: its owner, type and kept invitees before the save. */
	private static $before = array();

	/** The "inviteesid" this handler put in the request, until that save is over. */
	private static $setInvitees = null;

	public function handleEvent($eventName, $entityData) {
		try {
			$this->handle($eventName, $entityData);
		} catch (Exception $e) {
			error_log("calsync module: $eventName handler: " . $e->getMessage());
		} catch (Throwable $e) {
			error_log("calsync module: $eventName handler: " . $e->getMessage());
		}
	}

	private function handle($eventName, $entityData) {
		// Calendar records (events and tasks) are the one class Activity; anything else returns here.
		if (!is_object($entityData) || !isset($entityData->focus) || get_class($entityData->focus) !== 'Activity') {
			return;
		}
		if (function_exists('vtlib_isModuleActive') && !vtlib_isModuleActive('Calsync')) {
			return;
		}
		$id = (int) $entityData->getId();
		if ($eventName === 'vtiger.entity.beforesave') {
			$this->beforeSave($id);
		} elseif ($eventName === 'vtiger.entity.aftersave') {
			$this->afterSave($id, $entityData);
		} elseif ($eventName === 'vtiger.entity.afterdelete') {
			if ($entityData->get('activitytype') !== 'Task') {
				self::nudge(array($entityData->get('assigned_user_id')));
			}
		}
	}

	private function beforeSave($id) {
		if ($id <= 0) {
			return; // a create: nothing stored yet
		}
		$db = PearDatabase::getInstance();
		$result = $db->pquery('SELECT e.smownerid, a.activitytype FROM vtiger_crmentity e'
			. ' JOIN vtiger_activity a ON a.activityid = e.crmid WHERE e.crmid = ? AND e.deleted = 0', array($id));
		if (!$result || $db->num_rows($result) == 0) {
			return;
		}
		$row = $db->fetchByAssoc($result, -1, false);
		$kept = null;
		if ($row['activitytype'] !== 'Task' && Calsync_Invitees::shouldKeep($_REQUEST, true, self::$setInvitees)) {
			$kept = Calsync_Invitees::current($id);
			$_REQUEST['inviteesid'] = self::$setInvitees = Calsync_Invitees::asParameter($kept);
		}
		self::$before[$id] = array('owner' => (int) $row['smownerid'], 'type' => (string) $row['activitytype'], 'invitees' => $kept);
	}

	private function afterSave($id, $entityData) {
		$before = isset(self::$before[$id]) ? self::$before[$id] : null;
		unset(self::$before[$id]);
		if ($before !== null && $before['invitees'] !== null) {
			// The list was for this save only: the request's next save must not take it.
			if (self::$setInvitees !== null && isset($_REQUEST['inviteesid']) && $_REQUEST['inviteesid'] === self::$setInvitees) {
				unset($_REQUEST['inviteesid']);
			}
			self::$setInvitees = null;
			Calsync_Invitees::restoreStatuses($id, $before['invitees']);
		}
		$owners = array();
		if ($entityData->get('activitytype') !== 'Task') {
			$owners[] = $entityData->get('assigned_user_id');
		}
		// Reassigned, or made a task: the previous owner's calendar lost the event.
		if ($before !== null && $before['type'] !== 'Task') {
			$owners[] = $before['owner'];
		}
		self::nudge($owners);
	}

	/** Queues a nudge for each of these owners that is a user (an event can belong to a group). */
	private static function nudge(array $ownerIds) {
		$settings = Calsync_Config::load();
		if (Calsync_Nudger::isOwnWrite($_REQUEST, self::currentUserName(), $settings['integration_user'])) {
			return;
		}
		$ids = array();
		foreach ($ownerIds as $ownerId) {
			if ((int) $ownerId > 0) {
				$ids[(int) $ownerId] = true;
			}
		}
		if (!$ids) {
			return;
		}
		$ids = array_keys($ids);
		$db = PearDatabase::getInstance();
		$result = $db->pquery('SELECT user_name FROM vtiger_users WHERE deleted = 0 AND id IN (' . generateQuestionMarks($ids) . ')', $ids);
		if (!$result) {
			return;
		}
		while ($row = $db->fetchByAssoc($result, -1, false)) {
			Calsync_Nudger::queue($row['user_name']);
		}
	}

	/** The login of the user this request runs as (the webservice session's user there). */
	private static function currentUserName() {
		global $current_user;
		if (!is_object($current_user)) {
			return '';
		}
		if (isset($current_user->column_fields['user_name'])) {
			return (string) $current_user->column_fields['user_name'];
		}
		return isset($current_user->user_name) ? (string) $current_user->user_name : '';
	}
}
