<?php
/*
 * calsync CRM module: one HTTP request with hard time limits, through curl when PHP has it and
 * PHP's own streams otherwise (Debian's bare php-cli has no curl). Redirects are not followed.
 * Pure PHP (no vtiger).
 */

class Calsync_HttpError extends RuntimeException {
}

class Calsync_Http {

	/** Answers larger than this are cut: calsync's answers to the module are a few hundred bytes. */
	const MAX_BODY = 262144;

	/** Tests set this to false to exercise the streams path where curl exists. */
	public static $useCurl = true;

	/**
	 * @param string $method GET or POST
	 * @param string $url http or https
	 * @param string|null $body form body for POST
	 * @param float $connectTimeout seconds to open the connection (name lookup included)
	 * @param float $totalTimeout seconds for the whole request
	 * @return array ['status' => int, 'body' => string]
	 * @throws Calsync_HttpError when no answer came within the limits
	 */
	public static function request($method, $url, $body, $connectTimeout, $totalTimeout) {
		$scheme = strtolower((string) parse_url($url, PHP_URL_SCHEME));
		if ($scheme !== 'http' && $scheme !== 'https') {
			throw new Calsync_HttpError('only http and https URLs are used');
		}
		if (self::$useCurl && function_exists('curl_init')) {
			return self::viaCurl($method, $url, $body, $connectTimeout, $totalTimeout);
		}
		return self::viaStreams($method, $url, $body, $connectTimeout, $totalTimeout);
	}

	private static function headers($body) {
		$headers = array('Accept: application/json', 'User-Agent: calsync-crm-module');
		if ($body !== null) {
			$headers[] = 'Content-Type: application/x-www-form-urlencoded';
		}
		return $headers;
	}

	private static function viaCurl($method, $url, $body, $connectTimeout, $totalTimeout) {
		$ch = curl_init($url);
		$received = '';
		$options = array(
			CURLOPT_CUSTOMREQUEST => $method,
			CURLOPT_HTTPHEADER => self::headers($body),
			CURLOPT_CONNECTTIMEOUT_MS => (int) ceil($connectTimeout * 1000),
			CURLOPT_TIMEOUT_MS => (int) ceil($totalTimeout * 1000),
			// No SIGALRM for name lookups: sub-second limits work and no signal reaches PHP.
			CURLOPT_NOSIGNAL => 1,
			CURLOPT_FOLLOWLOCATION => false,
			CURLOPT_WRITEFUNCTION => function ($ch, $chunk) use (&$received) {
				if (strlen($received) + strlen($chunk) > Calsync_Http::MAX_BODY) {
					return 0;
				}
				$received .= $chunk;
				return strlen($chunk);
			},
		);
		if (defined('CURLOPT_PROTOCOLS')) {
			$options[CURLOPT_PROTOCOLS] = CURLPROTO_HTTP | CURLPROTO_HTTPS;
		}
		if ($body !== null) {
			$options[CURLOPT_POSTFIELDS] = $body;
		}
		curl_setopt_array($ch, $options);
		$ok = curl_exec($ch);
		$status = (int) curl_getinfo($ch, CURLINFO_HTTP_CODE);
		$error = curl_error($ch);
		curl_close($ch);
		if ($ok === false || $status === 0) {
			throw new Calsync_HttpError($error !== '' ? $error : 'no answer');
		}
		return array('status' => $status, 'body' => $received);
	}

	private static function viaStreams($method, $url, $body, $connectTimeout, $totalTimeout) {
		$started = microtime(true);
		// The http wrapper uses one "timeout" for connecting and for each read: the smaller
		// limit, so connect + read stays within the total for an answer that comes at once.
		$timeout = max(0.05, min($connectTimeout, $totalTimeout / 2));
		$http = array(
			'method' => $method,
			'header' => implode("\r\n", array_merge(self::headers($body), array('Connection: close'))),
			'timeout' => $timeout,
			'ignore_errors' => true,
			'follow_location' => 0,
			'max_redirects' => 1,
			'protocol_version' => 1.1,
		);
		if ($body !== null) {
			$http['content'] = $body;
		}
		$context = stream_context_create(array('http' => $http));
		$stream = @fopen($url, 'rb', false, $context);
		if ($stream === false) {
			$error = error_get_last();
			throw new Calsync_HttpError($error ? $error['message'] : 'no answer');
		}
		$received = '';
		while (!feof($stream) && strlen($received) < self::MAX_BODY) {
			if (microtime(true) - $started > $totalTimeout) {
				fclose($stream);
				throw new Calsync_HttpError('the answer took too long');
			}
			$chunk = fread($stream, 8192);
			if ($chunk === false) {
				break;
			}
			$meta = stream_get_meta_data($stream);
			if (!empty($meta['timed_out'])) {
				fclose($stream);
				throw new Calsync_HttpError('the answer took too long');
			}
			$received .= $chunk;
		}
		$meta = stream_get_meta_data($stream);
		fclose($stream);
		$status = 0;
		$headers = isset($meta['wrapper_data']) ? (array) $meta['wrapper_data'] : array();
		foreach ($headers as $line) {
			if (preg_match('#^HTTP/\S+\s+(\d{3})#', $line, $m)) {
				$status = (int) $m[1];
			}
		}
		if ($status === 0) {
			throw new Calsync_HttpError('no HTTP answer');
		}
		return array('status' => $status, 'body' => substr($received, 0, self::MAX_BODY));
	}
}
