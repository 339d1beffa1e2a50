<?php
/*
 * calsync CRM module: a user's sync state, asked of calsync server to server
 * (GET {auth_url}/status.json with a status link signed for this request) for the panel.
 * interpret() is pure; fetch() makes the request.
 */

require_once dirname(__FILE__) . '/Signer.php';
require_once dirname(__FILE__) . '/Http.php';

class Calsync_Status {

	/** The status link lives for this request only. */
	const LINK_SECONDS = 120;
	const CONNECT_TIMEOUT = 1.0;
	const TOTAL_TIMEOUT = 2.0;

	/** The states calsync reports. */
	public static function states() {
		return array('connected', 'disconnected', 'reconnect_required', 'never_connected');
	}

	/**
	 * @return array ['outcome' => 'ok' | 'unreachable' | 'refused' | 'error', 'status' => array|null]
	 */
	public static function fetch(array $settings, $user, $now = null) {
		try {
			$fields = Calsync_Signer::freshLinkFields($settings['link_key'], 'status', $settings['tenant'], $user, self::LINK_SECONDS, null, $now);
			$url = Calsync_Signer::linkUrl($settings['auth_url'], 'status.json', $fields);
			$answer = Calsync_Http::request('GET', $url, null, self::CONNECT_TIMEOUT, self::TOTAL_TIMEOUT);
		} catch (Calsync_HttpError $e) {
			error_log('calsync module: status of user ' . $user . ' not read: ' . $e->getMessage());
			return array('outcome' => 'unreachable', 'status' => null);
		}
		return self::interpret($answer['status'], $answer['body']);
	}

	/** What an answer of calsync's status.json means for the panel. */
	public static function interpret($httpStatus, $body) {
		if ($httpStatus === 403) {
			// A bad signature or an unknown tenant: the settings do not match calsync's.
			return array('outcome' => 'refused', 'status' => null);
		}
		if ($httpStatus !== 200) {
			return array('outcome' => ($httpStatus >= 500 ? 'unreachable' : 'error'), 'status' => null);
		}
		$json = json_decode((string) $body, true);
		if (!is_array($json) || !isset($json['status']) || !in_array($json['status'], self::states(), true)) {
			return array('outcome' => 'error', 'status' => null);
		}
		$problems = array();
		if (isset($json['problems']) && is_array($json['problems'])) {
			foreach ($json['problems'] as $problem) {
				if (is_array($problem)) {
					$problems[] = array(
						'code' => isset($problem['code']) ? (string) $problem['code'] : '',
						'detail' => isset($problem['detail']) ? (string) $problem['detail'] : '',
						'since' => self::epoch($problem, 'since'),
					);
				}
			}
		}
		return array('outcome' => 'ok', 'status' => array(
			'status' => $json['status'],
			'microsoft_account' => isset($json['microsoft_account']) && is_string($json['microsoft_account']) ? $json['microsoft_account'] : '',
			'connected_at' => self::epoch($json, 'connected_at'),
			'last_sync_to_crm_at' => self::epoch($json, 'last_sync_to_crm_at'),
			'last_sync_to_outlook_at' => self::epoch($json, 'last_sync_to_outlook_at'),
			'linked_events' => isset($json['linked_events']) && is_numeric($json['linked_events']) ? (int) $json['linked_events'] : null,
			'problems' => $problems,
		));
	}

	private static function epoch(array $json, $name) {
		return isset($json[$name]) && is_numeric($json[$name]) ? (int) $json[$name] : null;
	}

	/** An epoch time as the user reads it, in their own zone. */
	public static function formatTime($epoch, $timeZone) {
		if ($epoch === null) {
			return '';
		}
		try {
			$zone = new DateTimeZone($timeZone ? $timeZone : 'UTC');
		} catch (Exception $e) {
			$zone = new DateTimeZone('UTC');
		}
		$time = new DateTime('@' . (int) $epoch);
		$time->setTimezone($zone);
		return $time->format('Y-m-d H:i') . ' (' . $zone->getName() . ')';
	}
}
