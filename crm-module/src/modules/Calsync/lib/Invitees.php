<?php
/*
 * calsync CRM module: keeping an event's invitees through a webservice save.
 *
 * vtiger rebuilds an event's user invitees (vtiger_invitees) on every save from the request's
 * "inviteesid" parameter (Activity::save_module); a webservice revise or update that does not
 * name it — every one calsync sends — deletes them all, and the webservice cannot read them.
 * The module's beforesave handler runs before that rebuild: for a webservice save of an
 * existing event whose request has no "inviteesid", it puts the event's current invitees
 * there, so the rebuild writes them back. A request that names "inviteesid", even empty, is
 * the caller's new list and is left alone; saves from vtiger's own screens are left alone.
 */

class Calsync_Invitees {

	/** The webservice operations that save a record. */
	public static function savingOperations() {
		return array('create', 'update', 'revise');
	}

	/**
	 * Whether to keep the current invitees: a webservice save (the request's "operation" is
	 * create, update or revise) of a record that exists, without an "inviteesid" parameter.
	 *
	 * @param array $request the request's parameters ($_REQUEST)
	 * @param bool $recordExists whether the event is being edited (not created)
	 * @param string|null $setByModule the "inviteesid" this module put in the request for an
	 *        earlier event of the same request, if it is still there: not the caller's (a
	 *        workflow can save another event before the first save's handlers have finished)
	 */
	public static function shouldKeep(array $request, $recordExists, $setByModule = null) {
		if (!$recordExists) {
			return false;
		}
		if (!isset($request['operation']) || !is_string($request['operation'])) {
			return false;
		}
		if (!in_array(strtolower($request['operation']), self::savingOperations(), true)) {
			return false;
		}
		if (!array_key_exists('inviteesid', $request)) {
			return true;
		}
		return $setByModule !== null && $request['inviteesid'] === $setByModule;
	}

	/** The "inviteesid" value for these user ids: vtiger's ';'-separated list. */
	public static function asParameter(array $rows) {
		$ids = array();
		foreach ($rows as $row) {
			$ids[] = (string) (int) $row['inviteeid'];
		}
		return implode(';', $ids);
	}

	/** The event's invitee rows (inviteeid, status), from vtiger_invitees. */
	public static function current($activityId) {
		$db = PearDatabase::getInstance();
		$result = $db->pquery('SELECT inviteeid, status FROM vtiger_invitees WHERE activityid = ? ORDER BY inviteeid', array((int) $activityId));
		$rows = array();
		if ($result) {
			while ($row = $db->fetchByAssoc($result, -1, false)) {
				$rows[] = array('inviteeid' => (int) $row['inviteeid'], 'status' => (string) $row['status']);
			}
		}
		return $rows;
	}

	/**
	 * After the rebuild (which writes every invitee back as "sent"), the answers they had
	 * (accepted, declined…) are put back.
	 */
	public static function restoreStatuses($activityId, array $rows) {
		$db = PearDatabase::getInstance();
		foreach ($rows as $row) {
			if ($row['status'] !== '' && $row['status'] !== 'sent') {
				$db->pquery('UPDATE vtiger_invitees SET status = ? WHERE activityid = ? AND inviteeid = ?',
					array($row['status'], (int) $activityId, (int) $row['inviteeid']));
			}
		}
	}
}
