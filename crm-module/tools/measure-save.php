<?php
/*
 * Measures how long a vtiger webservice save of one event takes, for crm-module/README.md:
 * logs in, then revises the event N times (its location changes each time, so every save is
 * real) one after the other, and prints the median, 90th percentile, mean and worst in ms.
 * Run it with the module's handler active and inactive to see what the handler adds.
 *
 *   php crm-module/tools/measure-save.php http://127.0.0.1:8080 admin ACCESSKEY 18x204 40
 *
 * Uses PHP's streams only (no curl). Exit status 0, or 1 when a save fails.
 */

if ($argc !== 6) {
	fwrite(STDERR, "usage: php measure-save.php <vtiger URL> <user> <access key> <event id, e.g. 18x204> <saves>\n");
	exit(2);
}
list(, $base, $user, $accessKey, $id, $count) = $argv;
$ws = rtrim($base, '/') . '/webservice.php';

function call($url, $params, $post) {
	$query = http_build_query($params);
	$context = stream_context_create(array('http' => array(
		'method' => $post ? 'POST' : 'GET',
		'header' => $post ? "Content-Type: application/x-www-form-urlencoded\r\n" : '',
		'content' => $post ? $query : '',
		'timeout' => 30,
		'ignore_errors' => true,
	)));
	$body = file_get_contents($post ? $url : "$url?$query", false, $context);
	$json = json_decode((string) $body, true);
	if (!is_array($json) || empty($json['success'])) {
		fwrite(STDERR, "error: " . substr((string) $body, 0, 300) . "\n");
		exit(1);
	}
	return $json['result'];
}

$challenge = call($ws, array('operation' => 'getchallenge', 'username' => $user), false);
$login = call($ws, array('operation' => 'login', 'username' => $user, 'accessKey' => md5($challenge['token'] . $accessKey)), true);
$session = $login['sessionName'];

$times = array();
for ($i = 0; $i < (int) $count; $i++) {
	$element = json_encode(array('id' => $id, 'location' => 'measure ' . $i . ' ' . microtime(true)));
	$started = microtime(true);
	call($ws, array('operation' => 'revise', 'sessionName' => $session, 'element' => $element), true);
	$times[] = (microtime(true) - $started) * 1000;
}
sort($times);
$n = count($times);
printf("saves=%d median=%.1fms p90=%.1fms mean=%.1fms max=%.1fms min=%.1fms\n",
	$n, $times[(int) floor(($n - 1) / 2)], $times[(int) floor(0.9 * ($n - 1))], array_sum($times) / $n, $times[$n - 1], $times[0]);
