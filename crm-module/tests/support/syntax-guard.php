<?php
/*
 * The module runs on vtiger 7 too, i.e. on PHP 7.x: refuses the PHP 8 syntax that php -l on
 * PHP 8 accepts — match, ?->, attributes, enums, readonly and a catch without a variable.
 * (Named arguments and PHP 8 types are not detected: review for those.)
 * Usage: php syntax-guard.php FILE...
 */
$forbidden = array(
	'T_MATCH' => 'match (PHP 8)',
	'T_NULLSAFE_OBJECT_OPERATOR' => '?-> (PHP 8)',
	'T_ATTRIBUTE' => 'attributes (PHP 8)',
	'T_ENUM' => 'enum (PHP 8.1)',
	'T_READONLY' => 'readonly (PHP 8.1)',
);
$bad = 0;
foreach (array_slice($argv, 1) as $file) {
	$tokens = token_get_all(file_get_contents($file));
	$count = count($tokens);
	for ($i = 0; $i < $count; $i++) {
		$token = $tokens[$i];
		if (!is_array($token)) {
			continue;
		}
		$name = token_name($token[0]);
		if (isset($forbidden[$name])) {
			echo "$file:{$token[2]}: {$forbidden[$name]}\n";
			$bad++;
		}
		if ($token[0] === T_CATCH) {
			// catch ( Type [| Type] $var ): PHP 8 allows the variable to be left out.
			$j = $i + 1;
			$sawVariable = false;
			for (; $j < $count && $tokens[$j] !== ')'; $j++) {
				if (is_array($tokens[$j]) && $tokens[$j][0] === T_VARIABLE) {
					$sawVariable = true;
				}
			}
			if (!$sawVariable) {
				echo "$file:{$token[2]}: catch without a variable (PHP 8)\n";
				$bad++;
			}
		}
	}
}
exit($bad ? 1 : 0);
