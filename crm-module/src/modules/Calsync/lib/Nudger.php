<?php
/*
 * calsync CRM module: nudges — "this CRM user's calendar just changed" — so calsync syncs the
 * user in seconds rather than at its next sweep. A nudge names the tenant and the CRM user only.
 *
 * A save never waits on calsync and never fails because of it: users are collected during the
 * request (one nudge per user however many events it saved), and sent when PHP has finished the
 * request — after the answer has gone to the browser where PHP-FPM allows it
 * (fastcgi_finish_request) — each with short connect and total limits; every error is logged
 * and dropped. A lost nudge costs only time: calsync's scheduled sweep still finds the change.
 */

require_once dirname(__FILE__) . '/Signer.php';
require_once dirname(__FILE__) . '/Http.php';

class Calsync_Nudger {

	const CONNECT_TIMEOUT = 0.5;
	const TOTAL_TIMEOUT = 1.5;

	/**
	 * After calsync could not be reached (or answered 5xx), nudges to it are skipped for this
	 * long, so a calsync that is down costs one save up to TOTAL_TIMEOUT a minute rather than
	 * every save (and, under PHP-FPM, does not keep every worker busy after its answer).
	 */
	const BACKOFF_SECONDS = 60;

	/** CRM user names waiting for the end of the request. */
	private static $pending = array();
	private static $registered = false;

	/**
	 * Sends one nudge now. Never throws.
	 *
	 * @return bool whether calsync took it (HTTP 202)
	 */
	public static function send($webhookUrl, $linkKey, $tenant, $user, $connectTimeout = self::CONNECT_TIMEOUT, $totalTimeout = self::TOTAL_TIMEOUT) {
		$marker = self::backoffMarker($webhookUrl);
		try {
			$failedAt = @filemtime($marker);
			if ($failedAt !== false && time() - $failedAt < self::BACKOFF_SECONDS) {
				self::log("nudge for user $user skipped: calsync was unreachable less than " . self::BACKOFF_SECONDS . ' s ago');
				return false;
			}
			$form = Calsync_Signer::nudgeForm($linkKey, $tenant, $user, time(), Calsync_Signer::nonce());
			$answer = Calsync_Http::request('POST', Calsync_Signer::joinUrl($webhookUrl, 'nudge'), $form, $connectTimeout, $totalTimeout);
			if ($answer['status'] >= 500) {
				@touch($marker);
			}
			if ($answer['status'] !== 202) {
				self::log("calsync answered {$answer['status']} to a nudge for user $user");
				return false;
			}
			return true;
		} catch (Calsync_HttpError $e) {
			@touch($marker);
			self::log('nudge for user ' . $user . ' not sent: ' . $e->getMessage());
		} catch (Exception $e) {
			self::log('nudge for user ' . $user . ' not sent: ' . $e->getMessage());
		} catch (Throwable $e) {
			self::log('nudge for user ' . $user . ' not sent: ' . $e->getMessage());
		}
		return false;
	}

	/** The file whose time says when nudges to this webhook URL last failed (per CRM server). */
	public static function backoffMarker($webhookUrl) {
		return rtrim(sys_get_temp_dir(), '/') . '/calsync-nudge-failed-' . md5((string) $webhookUrl);
	}

	/**
	 * Whether a save belongs to calsync itself: made through vtiger's webservice (the request
	 * has an "operation" and a "sessionName", which vtiger's own screens never send) by the
	 * integration user named in the settings. calsync already knows what it wrote, so a nudge
	 * for it would only start a run with nothing to do. Saves the same user makes in vtiger's
	 * screens still nudge: an administrator's account may be both.
	 *
	 * @param array $request the request's parameters ($_REQUEST)
	 * @param string $userName the vtiger user making the save
	 * @param string $integrationUser the setting; empty: no save is calsync's
	 */
	public static function isOwnWrite(array $request, $userName, $integrationUser) {
		$integrationUser = (string) $integrationUser;
		if ($integrationUser === '' || (string) $userName === '') {
			return false;
		}
		if (!isset($request['operation'], $request['sessionName']) || !is_string($request['operation']) || !is_string($request['sessionName'])) {
			return false;
		}
		// vtiger looks user names up without regard to case (MySQL's collation), so does this.
		return strcasecmp((string) $userName, $integrationUser) === 0;
	}

	/** Adds a user to the nudges sent at the end of this request (once per user). */
	public static function queue($user) {
		$user = (string) $user;
		if (!Calsync_Signer::isUsableUser($user)) {
			return;
		}
		self::$pending[$user] = true;
		if (!self::$registered) {
			self::$registered = true;
			register_shutdown_function(array('Calsync_Nudger', 'flush'));
		}
	}

	/** The users queued so far (for tests). */
	public static function pending() {
		return array_keys(self::$pending);
	}

	/**
	 * At the end of the request: lets the answer go first where PHP can, then sends what was
	 * queued. $send replaces the sender in tests.
	 */
	public static function flush($settings = null, $send = null) {
		try {
			$users = array_keys(self::$pending);
			self::$pending = array();
			if (!$users) {
				return;
			}
			if ($settings === null) {
				require_once dirname(__FILE__) . '/Config.php';
				$settings = Calsync_Config::load();
			}
			if (empty($settings['webhook_url']) || empty($settings['link_key']) || empty($settings['tenant'])) {
				return;
			}
			if ($send === null) {
				self::finishResponse();
				$send = array('Calsync_Nudger', 'send');
			}
			foreach ($users as $user) {
				call_user_func($send, $settings['webhook_url'], $settings['link_key'], $settings['tenant'], $user);
			}
		} catch (Exception $e) {
			self::log('nudges not sent: ' . $e->getMessage());
		} catch (Throwable $e) {
			self::log('nudges not sent: ' . $e->getMessage());
		}
	}

	/**
	 * Under PHP-FPM the browser gets its answer (and the session is released) before the nudges
	 * go; other servers send the answer when the request, nudges included, ends.
	 */
	private static function finishResponse() {
		if (PHP_SAPI === 'cli') {
			return;
		}
		if (function_exists('session_status') && session_status() === PHP_SESSION_ACTIVE) {
			session_write_close();
		}
		if (function_exists('fastcgi_finish_request')) {
			fastcgi_finish_request();
		} elseif (function_exists('litespeed_finish_request')) {
			litespeed_finish_request();
		}
	}

	private static function log($message) {
		error_log('calsync module: ' . $message);
	}
}
