<?php
/*
 * calsync CRM module tools: loads vtiger from PHP's command line. Include it at the top level of
 * a tool (vtiger's configuration sets globals), after setting $CALSYNC_VTIGER_ROOT.
 * Run the tools as the web server's user (e.g. sudo -u www-data php …) so that the files they
 * write belong to it.
 */

if (PHP_SAPI !== 'cli') {
	exit("Run this from PHP's command line.\n");
}

function calsync_fail($message, $code = 1) {
	fwrite(STDERR, 'error: ' . $message . "\n");
	exit($code);
}

if (!is_file($CALSYNC_VTIGER_ROOT . '/config.inc.php') || !is_file($CALSYNC_VTIGER_ROOT . '/vtlib/Vtiger/Package.php')) {
	calsync_fail("$CALSYNC_VTIGER_ROOT is not a vtiger root (no config.inc.php or vtlib/ there)");
}
if (!chdir($CALSYNC_VTIGER_ROOT)) {
	calsync_fail("cannot change to $CALSYNC_VTIGER_ROOT");
}
// vtiger's code reads request globals even from the command line.
$_REQUEST = array();
$_SERVER['REQUEST_METHOD'] = 'GET';

require_once 'config.inc.php';
if (is_file('config_override.php')) {
	include_once 'config_override.php';
}
if (is_file('vendor/autoload.php')) {
	require_once 'vendor/autoload.php';
}
require_once 'include/utils/utils.php';
require_once 'vtlib/Vtiger/Module.php';
require_once 'vtlib/Vtiger/Package.php';
require_once 'includes/main/WebUI.php';

global $current_user, $adb;
$adb = PearDatabase::getInstance();
$current_user = Users::getActiveAdminUser();
if (!$current_user || empty($current_user->id)) {
	calsync_fail('vtiger has no active administrator, or its database cannot be reached (see config.inc.php)');
}
