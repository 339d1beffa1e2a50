<?php
/*
 * Removes the calsync CRM module from a vtiger: its event handlers, links, Settings entries and
 * settings table (the link key with it) through the module's own uninstall step, the module's
 * registration (vtlib's Vtiger_Module::delete), then its files.
 *
 *   php crm-module/tools/uninstall.php /var/www/vtiger
 *
 * Exit status: 0 removed (or not installed), 1 failed, 2 wrong arguments.
 */

if ($argc !== 2) {
	fwrite(STDERR, "usage: php uninstall.php <vtiger root>\n");
	exit(2);
}
$CALSYNC_VTIGER_ROOT = rtrim($argv[1], '/');
require __DIR__ . '/boot.php';

function calsync_remove_tree($path) {
	if (is_link($path) || is_file($path)) {
		return unlink($path);
	}
	if (!is_dir($path)) {
		return true;
	}
	foreach (scandir($path) as $entry) {
		if ($entry !== '.' && $entry !== '..') {
			calsync_remove_tree("$path/$entry");
		}
	}
	return rmdir($path);
}

try {
	$module = Vtiger_Module::getInstance('Calsync');
	if ($module) {
		// Fires module.preuninstall, where the module removes what it added.
		$module->delete();
		echo "calsync module unregistered.\n";
	} else {
		echo "calsync module was not registered.\n";
	}
	$paths = array_merge(
		array('modules/Calsync', 'layouts/v7/modules/Calsync', 'modules/Calsync/schema.xml'),
		glob('languages/*/Calsync.php') ?: array()
	);
	foreach ($paths as $path) {
		if (file_exists($path) && !calsync_remove_tree($path)) {
			calsync_fail("could not remove $CALSYNC_VTIGER_ROOT/$path");
		}
	}
	echo "calsync module files removed.\n";
} catch (Exception $e) {
	calsync_fail('uninstall failed: ' . $e->getMessage());
} catch (Throwable $e) {
	calsync_fail('uninstall failed: ' . $e->getMessage());
}
