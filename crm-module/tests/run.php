<?php
/*
 * The module's unit tests, for a bare php-cli (no Composer, no vtiger, no network beyond
 * loopback): php crm-module/tests/run.php. Exits 1 when any check fails.
 */

error_reporting(E_ALL);
ini_set('display_errors', 'stderr');

$LIB = dirname(__DIR__) . '/src/modules/Calsync/lib';
require_once "$LIB/Signer.php";
require_once "$LIB/Http.php";
require_once "$LIB/Config.php";
require_once "$LIB/Invitees.php";
require_once "$LIB/Nudger.php";
require_once "$LIB/Status.php";

// What the module logs goes to a file the last test reads (it must never hold a key).
$GLOBALS['log'] = tempnam(sys_get_temp_dir(), 'calsync-log');
ini_set('error_log', $GLOBALS['log']);

$GLOBALS['checks'] = 0;
$GLOBALS['failures'] = array();

function check($ok, $what) {
	$GLOBALS['checks']++;
	if (!$ok) {
		$GLOBALS['failures'][] = $what;
		fwrite(STDERR, "FAIL: $what\n");
	}
}

function same($expected, $actual, $what) {
	check($expected === $actual, $what . ': expected ' . var_export($expected, true) . ', got ' . var_export($actual, true));
}

function throws($fn, $what) {
	try {
		$fn();
	} catch (InvalidArgumentException $e) {
		check(true, $what);
		return;
	}
	check(false, "$what: no exception");
}

$tests = array();

$tests['every shared vector: the nudge signer and sender produce exactly its strings'] = function () {
	$vectors = json_decode(file_get_contents(dirname(dirname(__DIR__)) . '/fixtures/nudge/vectors.json'), true);
	check(is_array($vectors) && count($vectors['nudges']) > 0 && count($vectors['links']) > 0, 'fixtures/nudge/vectors.json is read');
	$key = $vectors['link_key'];
	foreach ($vectors['nudges'] as $i => $v) {
		same($v['message'], Calsync_Signer::nudgeMessage($v['tenant'], $v['user'], $v['ts'], $v['nonce']), "nudge $i message");
		same($v['sig'], Calsync_Signer::hmac($key, $v['message']), "nudge $i sig");
		same($v['form'], Calsync_Signer::nudgeForm($key, $v['tenant'], $v['user'], $v['ts'], $v['nonce']), "nudge $i form");
	}
	foreach ($vectors['links'] as $i => $v) {
		same($v['message'], Calsync_Signer::linkMessage($v['route'], $v['tenant'], $v['user'], $v['exp'], $v['return_to']), "link $i message");
		same($v['sig'], Calsync_Signer::hmac($key, $v['message']), "link $i sig");
		$fields = Calsync_Signer::linkFields($key, $v['route'], $v['tenant'], $v['user'], $v['exp'], $v['return_to']);
		same($v['query'], Calsync_Signer::formEncode($fields), "link $i query");
		same($v['sig'], $fields['sig'], "link $i signed field");
	}
};

$tests['form encoding is the WHATWG serializer calsync uses'] = function () {
	same('a=b+c&d=%2F%3F%26%3D%2B', Calsync_Signer::formEncode(array('a' => 'b c', 'd' => '/?&=+')), 'space, slash, reserved');
	same('x=*-._AZaz09', Calsync_Signer::formEncode(array('x' => '*-._AZaz09')), 'unreserved kept');
	same('x=%7E%21%27%28%29', Calsync_Signer::formEncode(array('x' => "~!'()")), 'escaped like calsync');
	same('u=jos%C3%A9+%E4%BC%9A', Calsync_Signer::formEncode(array('u' => 'josé 会')), 'UTF-8 bytes');
	same('e=', Calsync_Signer::formEncode(array('e' => '')), 'empty value');
};

$tests['links: each route at most its lifetime, the expiry and return_to in the signature'] = function () {
	$key = str_repeat('k', 32);
	$now = 1796400000;
	$f = Calsync_Signer::freshLinkFields($key, 'connect', 'acme', 'maria', 900, 'https://crm.example/x', $now);
	same(array('tenant', 'user', 'exp', 'return_to', 'sig'), array_keys($f), 'field order');
	same((string) ($now + 900), $f['exp'], 'connect expiry');
	same(Calsync_Signer::hmac($key, "connect\nacme\nmaria\n" . ($now + 900) . "\nhttps://crm.example/x"), $f['sig'], 'connect signature');
	throws(function () use ($key, $now) { Calsync_Signer::freshLinkFields($key, 'connect', 'acme', 'maria', 901, null, $now); }, 'connect over 15 minutes refused');
	Calsync_Signer::freshLinkFields($key, 'disconnect', 'acme', 'maria', 3600, null, $now);
	throws(function () use ($key, $now) { Calsync_Signer::freshLinkFields($key, 'disconnect', 'acme', 'maria', 3601, null, $now); }, 'disconnect over an hour refused');
	Calsync_Signer::freshLinkFields($key, 'status', 'acme', 'maria', 31 * 86400, null, $now);
	throws(function () use ($key, $now) { Calsync_Signer::freshLinkFields($key, 'status', 'acme', 'maria', 31 * 86400 + 1, null, $now); }, 'status over 31 days refused');
	throws(function () use ($key, $now) { Calsync_Signer::freshLinkFields($key, 'status', 'acme', 'maria', 0, null, $now); }, 'a zero lifetime refused');
	throws(function () use ($key, $now) { Calsync_Signer::freshLinkFields($key, 'admin', 'acme', 'maria', 60, null, $now); }, 'an unknown route refused');
	$noReturn = Calsync_Signer::freshLinkFields($key, 'status', 'acme', 'maria', 120, null, $now);
	same(array('tenant', 'user', 'exp', 'sig'), array_keys($noReturn), 'no return_to field without one');
	same(Calsync_Signer::hmac($key, "status\nacme\nmaria\n" . ($now + 120)), $noReturn['sig'], 'status signature without return_to');
	$url = Calsync_Signer::link('https://auth.example/base//', $key, 'connect', 'acme', 'maria', 900, 'https://crm.example/index.php?module=Calsync&view=Panel', $now);
	same('https://auth.example/base/connect?tenant=acme&user=maria&exp=' . ($now + 900)
		. '&return_to=https%3A%2F%2Fcrm.example%2Findex.php%3Fmodule%3DCalsync%26view%3DPanel&sig='
		. Calsync_Signer::hmac($key, "connect\nacme\nmaria\n" . ($now + 900) . "\nhttps://crm.example/index.php?module=Calsync&view=Panel"), $url, 'connect URL');
	same('https://auth.example/status.json?' . Calsync_Signer::formEncode($noReturn), Calsync_Signer::linkUrl('https://auth.example', 'status.json', $noReturn), 'status.json URL');
	$before = time();
	$fresh = Calsync_Signer::freshLinkFields($key, 'connect', 'acme', 'maria', 900);
	check((int) $fresh['exp'] >= $before + 900 && (int) $fresh['exp'] <= time() + 900, 'the expiry counts from now');
};

$tests['user names calsync can take'] = function () {
	check(Calsync_Signer::isUsableUser('maria'), 'plain');
	check(Calsync_Signer::isUsableUser('jose.garcía'), 'accented');
	check(Calsync_Signer::isUsableUser(str_repeat('a', 100)), '100 bytes');
	check(!Calsync_Signer::isUsableUser(str_repeat('a', 101)), 'not 101 bytes');
	check(!Calsync_Signer::isUsableUser(''), 'not empty');
	check(!Calsync_Signer::isUsableUser('ana maria'), 'not with a space');
	check(!Calsync_Signer::isUsableUser("ana\xc2\xa0maria"), 'not with a no-break space');
	check(!Calsync_Signer::isUsableUser('ana#1'), "not with '#'");
	check(!Calsync_Signer::isUsableUser("ana\x01"), 'not with a control character');
	check(!Calsync_Signer::isUsableUser("ana\xff"), 'not invalid UTF-8');
};

$tests['nonces are 16 to 64 URL-safe characters and differ'] = function () {
	$a = Calsync_Signer::nonce();
	$b = Calsync_Signer::nonce();
	check(preg_match('/^[A-Za-z0-9_-]{16,64}$/', $a) === 1, "nonce $a");
	check($a !== $b, 'two nonces differ');
};

$tests['invitees are kept only for a webservice save of an existing event that does not name them'] = function () {
	same(true, Calsync_Invitees::shouldKeep(array('operation' => 'revise', 'element' => '{}'), true), 'revise without inviteesid');
	same(true, Calsync_Invitees::shouldKeep(array('operation' => 'update'), true), 'update without inviteesid');
	same(true, Calsync_Invitees::shouldKeep(array('operation' => 'Revise'), true), 'operation in any case');
	same(false, Calsync_Invitees::shouldKeep(array('operation' => 'revise', 'inviteesid' => ''), true), 'an empty inviteesid is the new list');
	same(false, Calsync_Invitees::shouldKeep(array('operation' => 'revise', 'inviteesid' => '5;7'), true), 'a named list is left alone');
	same(false, Calsync_Invitees::shouldKeep(array('operation' => 'create'), false), 'a create has nothing to keep');
	same(false, Calsync_Invitees::shouldKeep(array('operation' => 'revise'), false), 'a record that does not exist');
	same(false, Calsync_Invitees::shouldKeep(array('module' => 'Events', 'action' => 'SaveAjax'), true), "vtiger's own screens");
	same(false, Calsync_Invitees::shouldKeep(array('operation' => 'retrieve'), true), 'not a save');
	same(false, Calsync_Invitees::shouldKeep(array('operation' => array('revise')), true), 'a malformed operation');
	same(true, Calsync_Invitees::shouldKeep(array('operation' => 'revise', 'inviteesid' => '5'), true, '5'), "the module's own list for an earlier event is not the caller's");
	same(false, Calsync_Invitees::shouldKeep(array('operation' => 'revise', 'inviteesid' => '5;7'), true, '5'), "a caller's list stays the caller's");
	same('5;7', Calsync_Invitees::asParameter(array(array('inviteeid' => 5, 'status' => 'sent'), array('inviteeid' => '7', 'status' => 'accepted'))), 'the list as vtiger reads it');
	same('', Calsync_Invitees::asParameter(array()), 'no invitees');
};

$tests['settings are checked before they are stored'] = function () {
	$good = array('auth_url' => ' https://auth.example.com/ ', 'webhook_url' => 'http://127.0.0.1:8095', 'tenant' => 'acme-es', 'link_key' => str_repeat('x', 32));
	list($clean, $errors) = Calsync_Config::validate($good, false);
	same(array(), $errors, 'good settings');
	same(array('auth_url' => 'https://auth.example.com', 'webhook_url' => 'http://127.0.0.1:8095', 'tenant' => 'acme-es', 'link_key' => str_repeat('x', 32), 'integration_user' => ''), $clean, 'trimmed, without a trailing slash, no integration user');
	foreach (array('ftp://auth.example.com', 'javascript:alert(1)', 'auth.example.com', 'https://', 'https://auth.example.com/?a=1', 'https://auth.example.com/#x', 'https://u:p@auth.example.com', 'https://auth.example.com/a b', '') as $bad) {
		list(, $errors) = Calsync_Config::validate(array('auth_url' => $bad) + $good, true);
		same('LBL_ERR_URL', isset($errors['auth_url']) ? $errors['auth_url'] : null, "auth URL $bad refused");
	}
	list(, $errors) = Calsync_Config::validate(array('webhook_url' => 'file:///etc/passwd') + $good, true);
	same('LBL_ERR_URL', isset($errors['webhook_url']) ? $errors['webhook_url'] : null, 'webhook URL checked too');
	foreach (array('', 'Acme', 'acme_es', '-acme', 'acme-', str_repeat('a', 41), "ac\nme", 'acmé') as $bad) {
		list(, $errors) = Calsync_Config::validate(array('tenant' => $bad) + $good, true);
		same('LBL_ERR_TENANT', isset($errors['tenant']) ? $errors['tenant'] : null, 'tenant ' . json_encode($bad) . ' refused');
	}
	list(, $errors) = Calsync_Config::validate(array('tenant' => str_repeat('a', 40)) + $good, true);
	same(array(), $errors, '40 characters is a tenant id');
	list(, $errors) = Calsync_Config::validate(array('link_key' => str_repeat('x', 31)) + $good, true);
	same(array('link_key' => 'LBL_ERR_KEY'), $errors, 'a 31-character key refused');
	list(, $errors) = Calsync_Config::validate(array('link_key' => str_repeat('x', 20) . ' ' . str_repeat('x', 20)) + $good, true);
	same(array('link_key' => 'LBL_ERR_KEY'), $errors, 'a key with a space refused');
	list($clean, $errors) = Calsync_Config::validate(array('link_key' => '') + $good, true);
	check($errors === array() && !array_key_exists('link_key', $clean), 'an empty key keeps the stored one');
	list(, $errors) = Calsync_Config::validate(array('link_key' => '') + $good, false);
	same(array('link_key' => 'LBL_ERR_KEY_MISSING'), $errors, 'a key is needed the first time');
	same('…mnop', Calsync_Config::keyHint('test-link-key-0123456789abcdefghijklmnop'), 'only the last four characters are shown');
	same('', Calsync_Config::keyHint(''), 'nothing for no key');
	check(!Calsync_Config::isComplete(array('auth_url' => 'x', 'webhook_url' => 'x', 'tenant' => 'x', 'link_key' => '')), 'incomplete without a key');
	check(Calsync_Config::isComplete(array('auth_url' => 'x', 'webhook_url' => 'x', 'tenant' => 'x', 'link_key' => 'x', 'integration_user' => '')), 'complete without an integration user');
	list($clean, $errors) = Calsync_Config::validate(array('integration_user' => ' admin ') + $good, true);
	check($errors === array() && $clean['integration_user'] === 'admin', 'an integration user is trimmed and stored');
	list($clean, $errors) = Calsync_Config::validate(array('integration_user' => 'jose.garcía') + $good, true);
	check($errors === array() && $clean['integration_user'] === 'jose.garcía', 'any name calsync can take');
	list($clean, $errors) = Calsync_Config::validate(array('integration_user' => '') + $good, true);
	check($errors === array() && $clean['integration_user'] === '', 'an empty integration user clears it');
	foreach (array('ana maria', 'ana#1', "an\ta", str_repeat('a', 101)) as $bad) {
		list(, $errors) = Calsync_Config::validate(array('integration_user' => $bad) + $good, true);
		same(array('integration_user' => 'LBL_ERR_INTEGRATION_USER'), $errors, 'integration user ' . json_encode($bad) . ' refused');
	}
	same('auth_url,webhook_url,tenant,link_key', implode(',', Calsync_Config::required()), 'the settings a save needs');
};

$tests["calsync's own saves send no nudge; everyone else's do"] = function () {
	// What vtiger's webservice.php receives for calsync's revise, create and delete.
	$revise = array('operation' => 'revise', 'sessionName' => '5f1a2b3c', 'element' => '{}');
	$create = array('operation' => 'create', 'sessionName' => '5f1a2b3c', 'elementType' => 'Events', 'element' => '{}');
	$delete = array('operation' => 'delete', 'sessionName' => '5f1a2b3c', 'id' => '18x204');
	same(true, Calsync_Nudger::isOwnWrite($revise, 'admin', 'admin'), "the integration user's revise");
	same(true, Calsync_Nudger::isOwnWrite($create, 'admin', 'admin'), "the integration user's create");
	same(true, Calsync_Nudger::isOwnWrite($delete, 'admin', 'admin'), "the integration user's delete");
	same(true, Calsync_Nudger::isOwnWrite($revise, 'Admin', 'admin'), 'user names compared without case, as vtiger does');
	same(false, Calsync_Nudger::isOwnWrite($revise, 'tokyo', 'admin'), "another user's webservice save");
	same(false, Calsync_Nudger::isOwnWrite($revise, 'admin', ''), 'no integration user set: every save nudges');
	same(false, Calsync_Nudger::isOwnWrite($revise, '', 'admin'), 'no user known');
	// vtiger's own screens: the same user editing by hand still nudges.
	same(false, Calsync_Nudger::isOwnWrite(array('module' => 'Events', 'action' => 'Save', 'record' => '204'), 'admin', 'admin'), "the integration user in vtiger's edit view");
	same(false, Calsync_Nudger::isOwnWrite(array('module' => 'Calendar', 'action' => 'SaveAjax', 'record' => '204', 'field' => 'subject', 'value' => 'x'), 'admin', 'admin'), "the integration user's inline edit");
	same(false, Calsync_Nudger::isOwnWrite(array('operation' => 'revise'), 'admin', 'admin'), 'an operation without a webservice session');
	same(false, Calsync_Nudger::isOwnWrite(array('operation' => array('revise'), 'sessionName' => 'x'), 'admin', 'admin'), 'a malformed operation');
	same(false, Calsync_Nudger::isOwnWrite(array('operation' => 'revise', 'sessionName' => array('x')), 'admin', 'admin'), 'a malformed session');
};

$tests["calsync's status answer, as the panel reads it"] = function () {
	$r = Calsync_Status::interpret(200, json_encode(array(
		'user' => 'maria', 'status' => 'connected', 'microsoft_account' => 'maria@contoso.example',
		'connected_at' => 1796400000, 'last_sync_to_crm_at' => 1796400100, 'last_sync_to_outlook_at' => null,
		'linked_events' => 12, 'problems' => array(array('code' => 'crm_unreachable', 'detail' => 'timed out', 'since' => 1796400200)),
	)));
	same('ok', $r['outcome'], 'connected: ok');
	same('connected', $r['status']['status'], 'state');
	same('maria@contoso.example', $r['status']['microsoft_account'], 'account');
	same(1796400100, $r['status']['last_sync_to_crm_at'], 'last sync to the CRM');
	same(null, $r['status']['last_sync_to_outlook_at'], 'no sync to Outlook yet');
	same(array(array('code' => 'crm_unreachable', 'detail' => 'timed out', 'since' => 1796400200)), $r['status']['problems'], 'problems');
	$r = Calsync_Status::interpret(200, '{"user":"ana","status":"never_connected","problems":[]}');
	same('never_connected', $r['status']['status'], 'never connected');
	same('refused', Calsync_Status::interpret(403, '{"error":"link_refused"}')['outcome'], '403: refused');
	same('unreachable', Calsync_Status::interpret(503, '')['outcome'], '5xx: unreachable');
	same('error', Calsync_Status::interpret(200, '<html>')['outcome'], 'not JSON: error');
	same('error', Calsync_Status::interpret(200, '{"status":"weird"}')['outcome'], 'an unknown state: error');
	same('error', Calsync_Status::interpret(404, '')['outcome'], '404: error');
	same('2026-12-04 11:00 (Europe/Madrid)', Calsync_Status::formatTime(1796378400, 'Europe/Madrid'), 'a time in the user\'s zone');
	same('2026-12-04 10:00 (UTC)', Calsync_Status::formatTime(1796378400, 'Not/AZone'), 'an unknown zone reads as UTC');
	same('', Calsync_Status::formatTime(null, 'UTC'), 'no time');
};

/** A loopback port nothing listens on. */
function closedPort() {
	$server = stream_socket_server('tcp://127.0.0.1:0');
	$name = stream_socket_get_name($server, false);
	fclose($server);
	return (int) substr($name, strrpos($name, ':') + 1);
}

/** The transports this PHP has: curl when loaded, and PHP's streams always. */
function transports() {
	return function_exists('curl_init') ? array('curl' => true, 'streams' => false) : array('streams' => false);
}

$tests['a nudge that cannot be sent is dropped quickly, without an error'] = function () {
	$port = closedPort();
	foreach (transports() as $name => $useCurl) {
		Calsync_Http::$useCurl = $useCurl;
		@unlink(Calsync_Nudger::backoffMarker("http://127.0.0.1:$port"));
		$started = microtime(true);
		$ok = Calsync_Nudger::send("http://127.0.0.1:$port", str_repeat('k', 32), 'acme', 'maria');
		$took = microtime(true) - $started;
		same(false, $ok, "$name: closed port, not sent");
		check($took < 0.6, "$name: closed port, gave up in {$took}s");
		same(false, Calsync_Nudger::send('not a url', str_repeat('k', 32), 'acme', 'maria'), "$name: a bad URL is dropped");
		@unlink(Calsync_Nudger::backoffMarker("http://127.0.0.1:$port"));
		@unlink(Calsync_Nudger::backoffMarker('not a url'));
	}
	Calsync_Http::$useCurl = true;
};

$tests['a nudge to a server that never answers gives up within its time limit'] = function () {
	// Connections are accepted by the kernel (the backlog) and never answered.
	$server = stream_socket_server('tcp://127.0.0.1:0');
	$name = stream_socket_get_name($server, false);
	foreach (transports() as $transport => $useCurl) {
		Calsync_Http::$useCurl = $useCurl;
		@unlink(Calsync_Nudger::backoffMarker("http://$name"));
		$started = microtime(true);
		$ok = Calsync_Nudger::send("http://$name", str_repeat('k', 32), 'acme', 'maria');
		$took = microtime(true) - $started;
		same(false, $ok, "$transport: silent server, not sent");
		check($took < Calsync_Nudger::TOTAL_TIMEOUT + 0.3, "$transport: gave up after {$took}s (limit " . Calsync_Nudger::TOTAL_TIMEOUT . 's)');
		// For a minute after that, nudges to it are skipped at once.
		$started = microtime(true);
		same(false, Calsync_Nudger::send("http://$name", str_repeat('k', 32), 'acme', 'pedro'), "$transport: skipped while backing off");
		check(microtime(true) - $started < 0.05, "$transport: skipping takes no time");
		@unlink(Calsync_Nudger::backoffMarker("http://$name"));
	}
	Calsync_Http::$useCurl = true;
	fclose($server);
};

$tests['a nudge reaches calsync as the signed form, once per user per request'] = function () {
	$record = tempnam(sys_get_temp_dir(), 'calsync-nudge');
	$port = closedPort();
	$cmd = escapeshellarg(PHP_BINARY) . ' -n -S 127.0.0.1:' . $port . ' ' . escapeshellarg(__DIR__ . '/support/nudge-server.php');
	$env = array('CALSYNC_TEST_RECORD' => $record, 'PATH' => getenv('PATH'));
	$proc = proc_open('exec ' . $cmd, array(0 => array('pipe', 'r'), 1 => array('file', '/dev/null', 'w'), 2 => array('file', '/dev/null', 'w')), $pipes, null, $env);
	$deadline = microtime(true) + 5;
	while (microtime(true) < $deadline && !@fsockopen('127.0.0.1', $port, $errno, $errstr, 0.1)) {
		usleep(50000);
	}
	$key = 'test-link-key-0123456789abcdefghijklmnop';
	try {
		foreach (transports() as $transport => $useCurl) {
			Calsync_Http::$useCurl = $useCurl;
			file_put_contents($record, '');
			@unlink(Calsync_Nudger::backoffMarker("http://127.0.0.1:$port/"));
			same(true, Calsync_Nudger::send("http://127.0.0.1:$port/", $key, 'acme-es', 'jose.garcía'), "$transport: 202 is taken");
			$lines = array_filter(explode("\n", file_get_contents($record)));
			same(1, count($lines), "$transport: one request");
			$got = json_decode(reset($lines), true);
			same('POST', $got['method'], "$transport: POST");
			same('/nudge', $got['path'], "$transport: to /nudge");
			same('application/x-www-form-urlencoded', $got['content_type'], "$transport: a form");
			parse_str($got['body'], $form);
			same(array('tenant', 'user', 'ts', 'nonce', 'sig'), array_keys($form), "$transport: the fields in order");
			same('jose.garcía', $form['user'], "$transport: user");
			check(abs((int) $form['ts'] - time()) <= 2, "$transport: ts is now");
			check(preg_match('/^[A-Za-z0-9_-]{16,64}$/', $form['nonce']) === 1, "$transport: nonce");
			same(Calsync_Signer::nudgeForm($key, 'acme-es', 'jose.garcía', $form['ts'], $form['nonce']), $got['body'], "$transport: the exact signed body");
		}
		Calsync_Http::$useCurl = true;

		// One nudge per user however many saves, and users calsync cannot name are skipped.
		foreach (array('maria', 'pedro', 'maria', 'ana maria', 'pedro') as $user) {
			Calsync_Nudger::queue($user);
		}
		same(array('maria', 'pedro'), Calsync_Nudger::pending(), 'collapsed per user');
		$sent = array();
		Calsync_Nudger::flush(array('webhook_url' => "http://127.0.0.1:$port", 'link_key' => $key, 'tenant' => 'acme'),
			function ($url, $k, $tenant, $user) use (&$sent) { $sent[] = "$tenant/$user"; return true; });
		same(array('acme/maria', 'acme/pedro'), $sent, 'flushed once each');
		same(array(), Calsync_Nudger::pending(), 'nothing left');
		Calsync_Nudger::queue('maria');
		$sent = array();
		Calsync_Nudger::flush(array('webhook_url' => '', 'link_key' => $key, 'tenant' => 'acme'),
			function () use (&$sent) { $sent[] = 'x'; return true; });
		same(array(), $sent, 'nothing is sent before the module is set up');
		Calsync_Nudger::queue('maria');
		Calsync_Nudger::flush(array('webhook_url' => 'http://127.0.0.1:1', 'link_key' => $key, 'tenant' => 'acme'),
			function () { throw new RuntimeException('boom'); });
		check(strpos(file_get_contents($GLOBALS['log']), 'nudges not sent: boom') !== false, 'a failing sender is logged, not thrown');
	} finally {
		proc_terminate($proc);
		proc_close($proc);
		@unlink($record);
	}
};

$tests['the log says why a nudge was dropped, and never holds a key or a signature'] = function () {
	$log = file_get_contents($GLOBALS['log']);
	check(strpos($log, 'nudge for user maria not sent') !== false, 'dropped nudges are logged');
	foreach (array(str_repeat('k', 32), 'test-link-key-0123456789abcdefghijklmnop', 'sig=') as $secret) {
		check(strpos($log, $secret) === false, "the log does not hold $secret");
	}
	if (getenv('CALSYNC_TEST_VERBOSE')) {
		fwrite(STDERR, $log);
	}
	@unlink($GLOBALS['log']);
};

foreach ($tests as $name => $test) {
	$before = count($GLOBALS['failures']);
	try {
		$test();
	} catch (Throwable $e) {
		$GLOBALS['failures'][] = "$name: " . get_class($e) . ': ' . $e->getMessage();
		fwrite(STDERR, "FAIL: $name: " . get_class($e) . ': ' . $e->getMessage() . "\n");
	}
	echo (count($GLOBALS['failures']) === $before ? 'ok   ' : 'FAIL ') . $name . "\n";
}
$failed = count($GLOBALS['failures']);
echo "\n{$GLOBALS['checks']} checks, " . ($failed ? "$failed failed" : 'all passed') . "\n";
exit($failed ? 1 : 0);
