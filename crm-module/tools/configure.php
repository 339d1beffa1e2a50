<?php
/*
 * Stores the calsync CRM module's settings as its settings page does (same checks).
 *
 *   php crm-module/tools/configure.php <vtiger root> <auth_url> <webhook_url> <tenant> <link_key> [integration user]
 *
 * The link key may be given as "-" to read it from standard input (keeps it out of the process
 * list and the shell history), e.g.
 *   calsync tenant show acme --reveal-link-key … | php configure.php /var/www/vtiger https://… https://… acme -
 * The integration user is the vtiger login calsync's tenant uses (calsync tenant show: crm_user):
 * its webservice saves send no nudge. Without it, every save nudges.
 * Exit status: 0 stored, 1 refused or failed, 2 wrong arguments.
 */

if ($argc !== 6 && $argc !== 7) {
	fwrite(STDERR, "usage: php configure.php <vtiger root> <auth_url> <webhook_url> <tenant> <link_key | -> [integration user]\n");
	exit(2);
}
$input = array('auth_url' => $argv[2], 'webhook_url' => $argv[3], 'tenant' => $argv[4], 'link_key' => $argv[5],
	'integration_user' => $argc === 7 ? $argv[6] : '');
if ($input['link_key'] === '-') {
	$input['link_key'] = trim((string) stream_get_contents(STDIN));
}
$CALSYNC_VTIGER_ROOT = rtrim($argv[1], '/');
require __DIR__ . '/boot.php';

if (!is_file('modules/Calsync/lib/Config.php') || !Vtiger_Module::getInstance('Calsync')) {
	calsync_fail('the calsync module is not installed in this vtiger (run install.php first)');
}
require_once 'modules/Calsync/lib/Config.php';

$messages = array(
	'LBL_ERR_URL' => 'must be an http:// or https:// address without query or fragment',
	'LBL_ERR_TENANT' => "must be 1 to 40 lowercase letters, digits and '-', not starting or ending with '-'",
	'LBL_ERR_KEY' => 'must be at least 32 printable characters without spaces',
	'LBL_ERR_KEY_MISSING' => 'is required',
	'LBL_ERR_INTEGRATION_USER' => "must be a CRM user name without spaces or '#'",
	'LBL_ERR_INTEGRATION_USER_UNKNOWN' => 'is no active vtiger user',
);
list($clean, $errors) = Calsync_Config::validate($input, false);
if (!isset($errors['integration_user']) && $clean['integration_user'] !== '' && !Calsync_Config::userExists($clean['integration_user'])) {
	$errors['integration_user'] = 'LBL_ERR_INTEGRATION_USER_UNKNOWN';
}
if ($errors) {
	foreach ($errors as $name => $code) {
		fwrite(STDERR, "error: $name {$messages[$code]}\n");
	}
	exit(1);
}
try {
	Calsync_Config::save($clean);
} catch (Exception $e) {
	calsync_fail('the settings were not stored: ' . $e->getMessage());
}
$stored = Calsync_Config::load();
echo "calsync module configured: auth_url={$stored['auth_url']} webhook_url={$stored['webhook_url']} tenant={$stored['tenant']} link_key=" . Calsync_Config::keyHint($stored['link_key'])
	. ' integration_user=' . ($stored['integration_user'] === '' ? '(none: every save nudges)' : $stored['integration_user']) . "\n";
