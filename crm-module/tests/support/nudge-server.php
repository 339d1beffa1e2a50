<?php
/*
 * A stand-in for calsync's POST /nudge in the tests (run with php -S): keeps what it was sent
 * in the file CALSYNC_TEST_RECORD names and answers 202, as calsync does for a nudge it takes.
 */
$record = getenv('CALSYNC_TEST_RECORD');
file_put_contents($record, json_encode(array(
	'method' => $_SERVER['REQUEST_METHOD'],
	'path' => parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH),
	'content_type' => isset($_SERVER['CONTENT_TYPE']) ? $_SERVER['CONTENT_TYPE'] : '',
	'body' => file_get_contents('php://input'),
)) . "\n", FILE_APPEND);
http_response_code(202);
