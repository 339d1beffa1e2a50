<?php
/*
 * Prints an event's user invitees as vtiger stores them (vtiger_invitees), one JSON array of
 * {"inviteeid": N, "status": "..."}: what the webservice cannot read, for checking that a save
 * kept them.
 *
 *   php crm-module/tools/invitees.php <vtiger root> <event id: 204 or 18x204>
 *
 * Exit status: 0, 1 on failure, 2 wrong arguments.
 */

if ($argc !== 3 || !preg_match('/^(?:\d+x)?(\d+)$/D', $argv[2], $id)) {
	fwrite(STDERR, "usage: php invitees.php <vtiger root> <event id>\n");
	exit(2);
}
$CALSYNC_VTIGER_ROOT = rtrim($argv[1], '/');
require __DIR__ . '/boot.php';

$result = $adb->pquery('SELECT inviteeid, status FROM vtiger_invitees WHERE activityid = ? ORDER BY inviteeid', array((int) $id[1]));
if (!$result) {
	calsync_fail('vtiger_invitees could not be read');
}
$rows = array();
while ($row = $adb->fetchByAssoc($result, -1, false)) {
	$rows[] = array('inviteeid' => (int) $row['inviteeid'], 'status' => (string) $row['status']);
}
echo json_encode($rows), "\n";
