<?php
/*
 * Installs the calsync CRM module into a vtiger from PHP's command line, the way Settings →
 * Module Manager → Import does (vtlib's Vtiger_Package). Idempotent: when the module is there
 * already it is updated from the zip (files, table, event handlers, links).
 *
 *   php crm-module/tools/install.php /var/www/vtiger target/crm-module/Calsync.zip
 *
 * Exit status: 0 installed or updated, 1 failed, 2 wrong arguments.
 */

if ($argc !== 3) {
	fwrite(STDERR, "usage: php install.php <vtiger root> <Calsync.zip>\n");
	exit(2);
}
$zip = realpath($argv[2]);
if ($zip === false || !is_file($zip)) {
	fwrite(STDERR, "error: {$argv[2]}: no such file (build it with crm-module/build)\n");
	exit(2);
}
$CALSYNC_VTIGER_ROOT = rtrim($argv[1], '/');
require __DIR__ . '/boot.php';

try {
	$package = new Vtiger_Package();
	$name = $package->getModuleNameFromZip($zip);
	if ($name !== 'Calsync') {
		calsync_fail("$zip is not the calsync module package (vtiger read " . var_export($name, true) . ' from it)');
	}
	$version = $package->getVersion();
	$module = Vtiger_Module::getInstance('Calsync');
	if ($module) {
		$from = $module->version;
		$package->update($module, $zip);
		$action = "updated from version $from to $version";
	} else {
		$package->import($zip);
		$action = "installed, version $version";
	}
	$module = Vtiger_Module::getInstance('Calsync');
	if (!$module) {
		calsync_fail('vtiger did not register the module; see its log (logs/vtigercrm.log)');
	}
	// vtiger's update does not re-run the manifest's <events>: the module's own set-up does it.
	require_once 'modules/Calsync/lib/Config.php';
	require_once 'modules/Calsync/Calsync.php';
	Calsync::setUp();
	$handlers = $adb->pquery('SELECT event_name FROM vtiger_eventhandlers WHERE handler_class = ? AND is_active = 1 ORDER BY event_name', array(Calsync::HANDLER_CLASS));
	$events = array();
	while ($row = $adb->fetchByAssoc($handlers, -1, false)) {
		$events[] = $row['event_name'];
	}
	echo "calsync module $action in $CALSYNC_VTIGER_ROOT (tab id {$module->id}).\n";
	echo 'active event handlers: ' . implode(', ', $events) . "\n";
	if (count($events) !== count(Calsync::events())) {
		calsync_fail('expected handlers for ' . implode(', ', Calsync::events()));
	}
	require_once 'modules/Calsync/lib/Config.php';
	if (!Calsync_Config::isComplete(Calsync_Config::load())) {
		echo "next: configure it (Settings, or php crm-module/tools/configure.php).\n";
	}
} catch (Exception $e) {
	calsync_fail('install failed: ' . $e->getMessage());
} catch (Throwable $e) {
	calsync_fail('install failed: ' . $e->getMessage());
}
