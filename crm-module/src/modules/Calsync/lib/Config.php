<?php
/*
 * calsync CRM module: its settings — calsync's auth URL, its webhook URL, the tenant id, the
 * link key and, optionally, the CRM user calsync logs in as (its integration user) — checked,
 * stored in the module's own table (vtiger_calsync_settings, created on install) and read back.
 * The link key is write-only: nothing here returns it to a page, only whether one is set and
 * its last four characters.
 *
 * validate() and keyHint() are pure; load(), save() and userExists() use vtiger's database.
 */

require_once dirname(__FILE__) . '/Signer.php';

class Calsync_Config {

	const TABLE = 'vtiger_calsync_settings';
	const MIN_KEY_LENGTH = 32;
	const MAX_KEY_LENGTH = 512;

	/** One read per request. */
	private static $loaded = null;

	/** The names stored, in the order the settings page shows them. */
	public static function names() {
		return array('auth_url', 'webhook_url', 'tenant', 'link_key', 'integration_user');
	}

	/** The settings the module needs before it signs anything (integration_user is optional). */
	public static function required() {
		return array('auth_url', 'webhook_url', 'tenant', 'link_key');
	}

	/**
	 * Checks what the settings page (or tools/configure.php) was given.
	 *
	 * @param array $input auth_url, webhook_url, tenant, link_key (an empty link_key keeps the
	 *        stored one), integration_user (optional: empty or missing means none)
	 * @param bool $hasKey whether a key is already stored
	 * @return array [array $clean, array $errors]: $errors maps a field name to an error code
	 *               (LBL_ERR_URL, LBL_ERR_TENANT, LBL_ERR_KEY, LBL_ERR_KEY_MISSING,
	 *               LBL_ERR_INTEGRATION_USER); $clean has the values to store (link_key only when
	 *               a new one was given)
	 */
	public static function validate(array $input, $hasKey) {
		$clean = array();
		$errors = array();
		foreach (array('auth_url', 'webhook_url') as $name) {
			$url = isset($input[$name]) ? trim((string) $input[$name]) : '';
			if (!self::isHttpUrl($url)) {
				$errors[$name] = 'LBL_ERR_URL';
			} else {
				$clean[$name] = rtrim($url, '/');
			}
		}
		$tenant = isset($input['tenant']) ? trim((string) $input['tenant']) : '';
		// calsync's tenant ids: 1-40 of a-z, 0-9 and '-', not starting or ending with '-'.
		if (!preg_match('/^[a-z0-9-]{1,40}$/D', $tenant) || $tenant[0] === '-' || substr($tenant, -1) === '-') {
			$errors['tenant'] = 'LBL_ERR_TENANT';
		} else {
			$clean['tenant'] = $tenant;
		}
		$key = isset($input['link_key']) ? trim((string) $input['link_key']) : '';
		if ($key === '') {
			if (!$hasKey) {
				$errors['link_key'] = 'LBL_ERR_KEY_MISSING';
			}
		} elseif (strlen($key) < self::MIN_KEY_LENGTH || strlen($key) > self::MAX_KEY_LENGTH
			|| !preg_match('/^[\x21-\x7e]+$/D', $key)) {
			$errors['link_key'] = 'LBL_ERR_KEY';
		} else {
			$clean['link_key'] = $key;
		}
		// The vtiger login calsync's tenant uses (calsync tenant show: crm_user); its webservice
		// saves send no nudge. A name calsync could not use is no integration user's.
		$integrationUser = isset($input['integration_user']) ? trim((string) $input['integration_user']) : '';
		if ($integrationUser !== '' && !Calsync_Signer::isUsableUser($integrationUser)) {
			$errors['integration_user'] = 'LBL_ERR_INTEGRATION_USER';
		} else {
			$clean['integration_user'] = $integrationUser;
		}
		return array($clean, $errors);
	}

	/** An absolute http(s) URL with a host, without user info, query or fragment. */
	public static function isHttpUrl($url) {
		if ($url === '' || strlen($url) > 1000 || preg_match('/[\s\x00-\x1f\x7f]/', $url)) {
			return false;
		}
		$parts = parse_url($url);
		if ($parts === false || empty($parts['scheme']) || empty($parts['host'])) {
			return false;
		}
		$scheme = strtolower($parts['scheme']);
		if ($scheme !== 'http' && $scheme !== 'https') {
			return false;
		}
		return !isset($parts['user']) && !isset($parts['pass']) && !isset($parts['query']) && !isset($parts['fragment']);
	}

	/** What a page may show of a key: that it is set, and its last four characters. */
	public static function keyHint($key) {
		$key = (string) $key;
		if ($key === '') {
			return '';
		}
		return '…' . substr($key, -4);
	}

	/** Whether every required setting is there (the module does nothing towards calsync until then). */
	public static function isComplete(array $settings) {
		foreach (self::required() as $name) {
			if (!isset($settings[$name]) || $settings[$name] === '') {
				return false;
			}
		}
		return true;
	}

	/** The stored settings (empty strings for the missing ones). Server-side use only. */
	public static function load() {
		if (self::$loaded !== null) {
			return self::$loaded;
		}
		$settings = array_fill_keys(self::names(), '');
		$db = PearDatabase::getInstance();
		$result = $db->pquery('SELECT name, value FROM ' . self::TABLE, array());
		if ($result) {
			while ($row = $db->fetchByAssoc($result, -1, false)) {
				if (array_key_exists($row['name'], $settings)) {
					$settings[$row['name']] = (string) $row['value'];
				}
			}
		}
		self::$loaded = $settings;
		return $settings;
	}

	/** Stores checked values (from validate()); a missing link_key leaves the stored one. */
	public static function save(array $clean) {
		$db = PearDatabase::getInstance();
		foreach (self::names() as $name) {
			if (!array_key_exists($name, $clean)) {
				continue;
			}
			$db->pquery('DELETE FROM ' . self::TABLE . ' WHERE name = ?', array($name));
			$db->pquery('INSERT INTO ' . self::TABLE . ' (name, value) VALUES (?, ?)', array($name, $clean[$name]));
		}
		self::$loaded = null;
	}

	/** Whether vtiger has an active user with this login (vtiger compares user names without case). */
	public static function userExists($userName) {
		$db = PearDatabase::getInstance();
		$result = $db->pquery("SELECT 1 FROM vtiger_users WHERE user_name = ? AND deleted = 0 AND status = 'Active'", array((string) $userName));
		return $result && $db->num_rows($result) > 0;
	}

	/** The table, for install and update (the manifest creates it too; this covers updates). */
	public static function createTable() {
		$db = PearDatabase::getInstance();
		$db->pquery('CREATE TABLE IF NOT EXISTS ' . self::TABLE . ' (name VARCHAR(50) NOT NULL PRIMARY KEY, value TEXT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8', array());
	}

	public static function dropTable() {
		$db = PearDatabase::getInstance();
		$db->pquery('DROP TABLE IF EXISTS ' . self::TABLE, array());
	}
}
