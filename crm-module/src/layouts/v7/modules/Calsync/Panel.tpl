{* calsync CRM module: the user's Office 365 calendar panel (modules/Calsync/views/Panel.php). *}
{strip}
<div class="main-container main-container-Calsync">
<div class="content-area full-width" id="calsync-panel" style="padding: 20px 30px;">
	<h3>{vtranslate('LBL_PANEL_TITLE', 'Calsync')|escape}</h3>
	<p>{vtranslate('LBL_PANEL_INTRO', 'Calsync')|escape}</p>
	{if $CALSYNC.just_connected && $CALSYNC.status eq 'connected'}
		<div class="alert alert-success">{vtranslate('LBL_JUST_CONNECTED', 'Calsync')|escape}</div>
	{/if}

	{if $CALSYNC.state eq 'not_configured'}
		<div class="alert alert-warning" data-calsync-state="not_configured">
			{vtranslate('LBL_NOT_CONFIGURED', 'Calsync')|escape}
			{if $CALSYNC.settings_url} <a href="{$CALSYNC.settings_url|escape}">{vtranslate('LBL_OPEN_SETTINGS', 'Calsync')|escape}</a>{/if}
		</div>
	{elseif $CALSYNC.state eq 'unusable_user'}
		<div class="alert alert-warning" data-calsync-state="unusable_user">{vtranslate('LBL_UNUSABLE_USER', 'Calsync')|escape}</div>
	{elseif $CALSYNC.state eq 'refused'}
		<div class="alert alert-danger" data-calsync-state="refused">
			{vtranslate('LBL_REFUSED', 'Calsync')|escape}
			{if $CALSYNC.settings_url} <a href="{$CALSYNC.settings_url|escape}">{vtranslate('LBL_OPEN_SETTINGS', 'Calsync')|escape}</a>{/if}
		</div>
	{elseif $CALSYNC.state neq 'ok'}
		<div class="alert alert-warning" data-calsync-state="unreachable">{vtranslate('LBL_UNREACHABLE', 'Calsync')|escape}</div>
	{else}
		<table class="table table-bordered" style="max-width: 760px;" data-calsync-status="{$CALSYNC.status|escape}">
			<tr><th style="width: 40%;">{vtranslate('LBL_STATE', 'Calsync')|escape}</th><td><strong>{$CALSYNC.status_label|escape}</strong></td></tr>
			<tr><th>{vtranslate('LBL_CRM_USER', 'Calsync')|escape}</th><td>{$CALSYNC.user|escape}</td></tr>
			{if $CALSYNC.status neq 'never_connected'}
				<tr><th>{vtranslate('LBL_MICROSOFT_ACCOUNT', 'Calsync')|escape}</th><td>{$CALSYNC.account|escape}</td></tr>
				<tr><th>{vtranslate('LBL_CONNECTED_SINCE', 'Calsync')|escape}</th><td>{$CALSYNC.connected_at|escape}</td></tr>
				<tr><th>{vtranslate('LBL_LAST_TO_CRM', 'Calsync')|escape}</th><td>{if $CALSYNC.to_crm}{$CALSYNC.to_crm|escape}{else}{vtranslate('LBL_NOT_YET', 'Calsync')|escape}{/if}</td></tr>
				<tr><th>{vtranslate('LBL_LAST_TO_OUTLOOK', 'Calsync')|escape}</th><td>{if $CALSYNC.to_outlook}{$CALSYNC.to_outlook|escape}{else}{vtranslate('LBL_NOT_YET', 'Calsync')|escape}{/if}</td></tr>
				{if $CALSYNC.linked_events neq ''}
					<tr><th>{vtranslate('LBL_LINKED_EVENTS', 'Calsync')|escape}</th><td>{$CALSYNC.linked_events|escape}</td></tr>
				{/if}
			{/if}
		</table>
		<h4>{vtranslate('LBL_PROBLEMS', 'Calsync')|escape}</h4>
		{if $CALSYNC.problems}
			<ul class="calsync-problems">
				{foreach item=PROBLEM from=$CALSYNC.problems}
					<li><code>{$PROBLEM.code|escape}</code> {$PROBLEM.detail|escape}{if $PROBLEM.since} <small>({vtranslate('LBL_PROBLEM_SINCE', 'Calsync')|escape} {$PROBLEM.since|escape})</small>{/if}</li>
				{/foreach}
			</ul>
		{else}
			<p>{vtranslate('LBL_NO_PROBLEMS', 'Calsync')|escape}</p>
		{/if}
	{/if}

	<div class="calsync-actions" style="margin-top: 15px;">
		{if $CALSYNC.show_connect}
			<a class="btn btn-success" id="calsync-connect" href="{$CALSYNC.connect_url|escape}" title="{vtranslate('LBL_CONNECT_HELP', 'Calsync')|escape}">{vtranslate($CALSYNC.connect_label, 'Calsync')|escape}</a>&nbsp;
		{/if}
		{if $CALSYNC.show_details}
			<a class="btn btn-default" id="calsync-details" href="{$CALSYNC.details_url|escape}" target="_blank" rel="noopener">{vtranslate('LBL_DETAILS', 'Calsync')|escape}</a>&nbsp;
		{/if}
		{if $CALSYNC.show_disconnect}
			{* Posts to calsync, not to the CRM. vtiger adds its CSRF token to every form it sees as
			   a POST form (a rewrite of method="post" on the server, and a script in the browser
			   that skips forms already holding the field): the unquoted method and the disabled,
			   never-sent __vtrftk keep the CRM's token from going to another site. *}
			<form id="calsync-disconnect" action="{$CALSYNC.disconnect_action|escape}" method=post style="display: inline;">
				<input type="hidden" name="__vtrftk" value="" disabled>
				{foreach key=NAME item=VALUE from=$CALSYNC.disconnect_fields}
					<input type="hidden" name="{$NAME|escape}" value="{$VALUE|escape}">
				{/foreach}
				<button type="submit" class="btn btn-danger">{vtranslate('LBL_DISCONNECT', 'Calsync')|escape}</button>
			</form>
		{/if}
	</div>
</div>
</div>
{/strip}
