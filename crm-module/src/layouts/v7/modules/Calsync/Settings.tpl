{* calsync CRM module: the administrators' settings page (modules/Calsync/views/Settings.php). *}
{strip}
<div class="main-container main-container-Calsync">
<div class="content-area full-width" id="calsync-settings" style="padding: 20px 30px; max-width: 900px;">
	<h3>{vtranslate('LBL_SETTINGS_TITLE', 'Calsync')|escape}</h3>
	<p>{vtranslate('LBL_SETTINGS_INTRO', 'Calsync')|escape}</p>
	{if $CALSYNC.saved}
		<div class="alert alert-success" data-calsync-saved="1">{vtranslate('LBL_SAVED', 'Calsync')|escape}</div>
	{/if}
	{if $CALSYNC.errors}
		<div class="alert alert-danger" data-calsync-errors="{$CALSYNC.errors|@count}">{vtranslate('LBL_NOT_SAVED', 'Calsync')|escape}</div>
	{/if}
	{if $CALSYNC.check}
		<table class="table table-bordered" id="calsync-check">
			<tr><th>{vtranslate('LBL_CHECK_AUTH', 'Calsync')|escape}</th>
				<td data-calsync-check-auth="{$CALSYNC.check.auth|escape}">
					{if $CALSYNC.check.auth eq 'ok'}{vtranslate('LBL_CHECK_OK', 'Calsync')|escape}
					{elseif $CALSYNC.check.auth eq 'refused'}{vtranslate('LBL_CHECK_REFUSED', 'Calsync')|escape}
					{elseif $CALSYNC.check.auth eq 'unreachable'}{vtranslate('LBL_CHECK_UNREACHABLE', 'Calsync')|escape}
					{else}{vtranslate('LBL_CHECK_ERROR', 'Calsync')|escape}{/if}
				</td></tr>
			<tr><th>{vtranslate('LBL_CHECK_WEBHOOK', 'Calsync')|escape}</th>
				<td data-calsync-check-webhook="{$CALSYNC.check.webhook|escape}">
					{if $CALSYNC.check.webhook eq 'ok'}{vtranslate('LBL_CHECK_OK', 'Calsync')|escape}{else}{vtranslate('LBL_CHECK_FAILED', 'Calsync')|escape}{/if}
				</td></tr>
		</table>
	{/if}
	<form method="post" action="index.php" autocomplete="off" class="form-horizontal">
		<input type="hidden" name="module" value="Calsync">
		<input type="hidden" name="action" value="SaveSettings">
		{foreach item=FIELD from=$CALSYNC.fields}
			<div class="form-group{if $FIELD.error} has-error{/if}">
				<label class="col-sm-3 control-label" for="calsync-{$FIELD.name|escape}">{$FIELD.label|escape}</label>
				<div class="col-sm-9">
					<input class="inputElement form-control" type="{$FIELD.type|escape}" id="calsync-{$FIELD.name|escape}" name="{$FIELD.name|escape}" value="{$FIELD.value|escape}"{if $FIELD.required} required{/if}>
					<span class="help-block">{if $FIELD.error}{$FIELD.error|escape}{else}{$FIELD.help|escape}{/if}</span>
				</div>
			</div>
		{/foreach}
		<div class="form-group{if isset($CALSYNC.errors.link_key)} has-error{/if}">
			<label class="col-sm-3 control-label" for="calsync-link_key">{vtranslate('LBL_LINK_KEY', 'Calsync')|escape}</label>
			<div class="col-sm-9">
				<input class="inputElement form-control" type="password" id="calsync-link_key" name="link_key" value="" autocomplete="new-password" {if !$CALSYNC.key_hint}required{/if}>
				<span class="help-block" data-calsync-key-hint="{$CALSYNC.key_hint|escape}">
					{if isset($CALSYNC.errors.link_key)}{vtranslate($CALSYNC.errors.link_key, 'Calsync')|escape}
					{elseif $CALSYNC.key_hint}{vtranslate('LBL_LINK_KEY_SET', 'Calsync', $CALSYNC.key_hint)|escape}
					{else}{vtranslate('LBL_LINK_KEY_UNSET', 'Calsync')|escape}{/if}
					{' '}{vtranslate('LBL_LINK_KEY_HELP', 'Calsync')|escape}
				</span>
			</div>
		</div>
		<div class="form-group">
			<div class="col-sm-offset-3 col-sm-9">
				<button type="submit" class="btn btn-success">{vtranslate('LBL_SAVE', 'Calsync')|escape}</button>
				{if $CALSYNC.complete}&nbsp;<a class="btn btn-default" href="index.php?module=Calsync&amp;view=Settings&amp;check=1">{vtranslate('LBL_CHECK', 'Calsync')|escape}</a>{/if}
			</div>
		</div>
	</form>
</div>
</div>
{/strip}
