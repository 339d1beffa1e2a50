<?php
/*
 * calsync CRM module: the signatures calsync checks.
 *
 * Links: hex HMAC-SHA256 under the tenant's link key over "R\nT\nU\nE[\nURL]" (the route the
 * link opens, tenant, CRM user, expiry in epoch seconds, optional return URL); sent as
 * tenant=T&user=U&exp=E[&return_to=URL]&sig=S.
 * Nudges: the same HMAC over "nudge\nT\nU\nTS\nN"; sent as tenant=T&user=U&ts=TS&nonce=N&sig=S.
 * calsync's docs/design.md (2.3, 2.4) and fixtures/nudge/vectors.json are the contract.
 *
 * Pure PHP (no vtiger), so the tests run it with a bare php-cli.
 */

class Calsync_Signer {

	/** How long a link for each route may live at most (calsync refuses longer ones). */
	const CONNECT_SECONDS = 900;
	const DISCONNECT_SECONDS = 3600;
	const STATUS_SECONDS = 2678400;

	/** The longest lifetime calsync accepts for a route's link. */
	public static function maxLifetime($route) {
		switch ($route) {
			case 'connect':
				return self::CONNECT_SECONDS;
			case 'disconnect':
				return self::DISCONNECT_SECONDS;
			case 'status':
				return self::STATUS_SECONDS;
		}
		throw new InvalidArgumentException("unknown route: $route");
	}

	/** The user names calsync accepts: 1 to 100 bytes, no whitespace, control characters or '#'. */
	public static function isUsableUser($user) {
		$user = (string) $user;
		if ($user === '' || strlen($user) > 100) {
			return false;
		}
		// Any Unicode space or control character, or '#' (invalid UTF-8 fails the match too).
		if (@preg_match('/[\s\p{Z}\p{Cc}#]/u', $user) !== 0) {
			return false;
		}
		return true;
	}

	/**
	 * application/x-www-form-urlencoded, byte for byte as calsync's serializer writes it (the
	 * WHATWG rules): ASCII letters, digits and "*-._" stay, a space is "+", every other byte is
	 * %XX in capitals. (PHP's urlencode also escapes "*"; nothing signed depends on that, but
	 * the shared vectors compare whole strings.)
	 *
	 * @param array $pairs name => value, in order
	 */
	public static function formEncode(array $pairs) {
		$parts = array();
		foreach ($pairs as $name => $value) {
			$parts[] = self::encodeComponent((string) $name) . '=' . self::encodeComponent((string) $value);
		}
		return implode('&', $parts);
	}

	private static function encodeComponent($value) {
		// Byte by byte (no /u): a UTF-8 character becomes one %XX per byte.
		$encoded = preg_replace_callback('/[^A-Za-z0-9*\-._ ]/', function ($m) {
			return sprintf('%%%02X', ord($m[0]));
		}, $value);
		return str_replace(' ', '+', $encoded);
	}

	public static function hmac($linkKey, $message) {
		return hash_hmac('sha256', $message, $linkKey);
	}

	public static function linkMessage($route, $tenant, $user, $exp, $returnTo = null) {
		$message = "$route\n$tenant\n$user\n$exp";
		if ($returnTo !== null) {
			$message .= "\n" . $returnTo;
		}
		return $message;
	}

	/**
	 * The signed fields of a link, in calsync's order: tenant, user, exp, [return_to], sig.
	 * (The disconnect form posts exactly these.)
	 */
	public static function linkFields($linkKey, $route, $tenant, $user, $exp, $returnTo = null) {
		$fields = array('tenant' => (string) $tenant, 'user' => (string) $user, 'exp' => (string) $exp);
		if ($returnTo !== null) {
			$fields['return_to'] = (string) $returnTo;
		}
		$fields['sig'] = self::hmac($linkKey, self::linkMessage($route, $tenant, $user, $exp, $returnTo));
		return $fields;
	}

	/**
	 * Fields for a link that opens $route for $lifetime seconds from $now. A lifetime longer
	 * than calsync allows for the route (or not positive) is refused here rather than by
	 * calsync later.
	 */
	public static function freshLinkFields($linkKey, $route, $tenant, $user, $lifetime, $returnTo = null, $now = null) {
		$lifetime = (int) $lifetime;
		if ($lifetime <= 0 || $lifetime > self::maxLifetime($route)) {
			throw new InvalidArgumentException("a $route link may live 1 to " . self::maxLifetime($route) . " seconds, not $lifetime");
		}
		$now = ($now === null) ? time() : (int) $now;
		return self::linkFields($linkKey, $route, $tenant, $user, $now + $lifetime, $returnTo);
	}

	/** The URL of a fresh link that opens $route on calsync's auth URL. */
	public static function link($authUrl, $linkKey, $route, $tenant, $user, $lifetime, $returnTo = null, $now = null) {
		$fields = self::freshLinkFields($linkKey, $route, $tenant, $user, $lifetime, $returnTo, $now);
		return self::linkUrl($authUrl, $route, $fields);
	}

	/** $path on calsync's auth URL with the signed fields as its query ("status.json" takes a status link). */
	public static function linkUrl($authUrl, $path, array $fields) {
		return self::joinUrl($authUrl, $path) . '?' . self::formEncode($fields);
	}

	/** calsync's own join: the base without trailing slashes, then "/" and the path. */
	public static function joinUrl($base, $path) {
		return rtrim((string) $base, '/') . '/' . $path;
	}

	public static function nudgeMessage($tenant, $user, $ts, $nonce) {
		return "nudge\n$tenant\n$user\n$ts\n$nonce";
	}

	/** The nudge's form body: tenant, user, ts, nonce, sig. */
	public static function nudgeForm($linkKey, $tenant, $user, $ts, $nonce) {
		return self::formEncode(array(
			'tenant' => (string) $tenant,
			'user' => (string) $user,
			'ts' => (string) $ts,
			'nonce' => (string) $nonce,
			'sig' => self::hmac($linkKey, self::nudgeMessage($tenant, $user, $ts, $nonce)),
		));
	}

	/** 22 random URL-safe characters (128 bits): calsync takes 16 to 64 of [A-Za-z0-9_-]. */
	public static function nonce() {
		return rtrim(strtr(base64_encode(random_bytes(16)), '+/', '-_'), '=');
	}
}
