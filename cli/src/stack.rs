//! `--stack NAME`: the deployed stack's outputs (and its `SecretPrefix` parameter) stand in for
//! the `CALSYNC_*` variables an operator would otherwise export by hand.
//!
//! One CloudFormation call, `DescribeStacks`, made with the signing and credential crates the
//! AWS SDK already brings (SigV4 over the query protocol, the answer read with the SDK's XML
//! reader): the SDK's own CloudFormation client is some 160,000 lines of generated code, more
//! than the DynamoDB client, to compile for this one call.

use std::collections::HashMap;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_xml::decode::{try_data, Document, ScopedDecoder};

/// Which output (or parameter) fills which variable.
const FROM_OUTPUTS: [(&str, &str); 4] = [
    ("TableName", "CALSYNC_TABLE"),
    ("JobQueueUrl", "CALSYNC_QUEUE_URL"),
    ("AuthUrl", "CALSYNC_PUBLIC_URL"),
    ("WebhookUrl", "CALSYNC_WEBHOOK_URL"),
];
const REQUIRED_OUTPUTS: [&str; 2] = ["TableName", "AuthUrl"];
const SECRET_PREFIX: (&str, &str) = ("SecretPrefix", "CALSYNC_SECRET_PREFIX");

/// What one stack says about itself.
#[derive(Debug, Default, PartialEq)]
pub struct StackFacts {
    pub status: String,
    pub outputs: HashMap<String, String>,
    pub parameters: HashMap<String, String>,
}

impl StackFacts {
    /// The `CALSYNC_*` variables the stack fills.
    pub fn variables(&self, stack: &str) -> Result<HashMap<String, String>> {
        for name in REQUIRED_OUTPUTS {
            if !self.outputs.contains_key(name) {
                bail!("stack {stack} has no output {name}: is it a calsync stack?");
            }
        }
        let mut vars: HashMap<String, String> = FROM_OUTPUTS
            .iter()
            .filter_map(|(output, var)| {
                self.outputs
                    .get(*output)
                    .map(|value| ((*var).to_owned(), value.clone()))
            })
            .collect();
        // An output of that name, if a template adds one, else the parameter.
        let (name, var) = SECRET_PREFIX;
        if let Some(prefix) = self.outputs.get(name).or_else(|| self.parameters.get(name)) {
            vars.insert(var.to_owned(), prefix.clone());
        }
        Ok(vars)
    }
}

/// Reads the stack `name` in the configured region (and endpoint, for an emulator).
pub async fn describe(name: &str) -> Result<StackFacts> {
    let sdk = calsync::adapters::aws::sdk_config().await;
    let region = sdk
        .region()
        .context("--stack needs a region (AWS_REGION, or the profile's)")?
        .to_string();
    let endpoint = std::env::var("AWS_ENDPOINT_URL_CLOUDFORMATION")
        .ok()
        .or_else(|| sdk.endpoint_url().map(str::to_owned))
        .unwrap_or_else(|| format!("https://cloudformation.{region}.amazonaws.com"));
    let endpoint = format!("{}/", endpoint.trim_end_matches('/'));
    let credentials = sdk
        .credentials_provider()
        .context("--stack needs AWS credentials")?
        .provide_credentials()
        .await
        .context("loading AWS credentials")?;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "DescribeStacks")
        .append_pair("StackName", name)
        .append_pair("Version", "2010-05-15")
        .finish();
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("cloudformation")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .context("signing the CloudFormation request")?
        .into();
    let signable = SignableRequest::new(
        "POST",
        &endpoint,
        [("content-type", content_type)].into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .context("signing the CloudFormation request")?;
    let (instructions, _) = sign(signable, &params)
        .context("signing the CloudFormation request")?
        .into_parts();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut request = client
        .post(&endpoint)
        .header("content-type", content_type)
        .body(body);
    for (header, value) in instructions.headers() {
        request = request.header(header, value);
    }
    let response = request
        .send()
        .await
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("CloudFormation in {region} could not be reached"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .context("reading CloudFormation's answer")?;
    let facts = parse(&text)
        .with_context(|| format!("reading stack {name} (CloudFormation answered HTTP {status})"))?;
    if facts.status.is_empty() {
        bail!("stack {name} was not found in {region}");
    }
    if facts.status.starts_with("DELETE") || facts.status.ends_with("_FAILED") {
        bail!("stack {name} is {}", facts.status);
    }
    Ok(facts)
}

/// Reads a `DescribeStacks` answer (its first stack), or the error CloudFormation sent.
pub fn parse(xml: &str) -> Result<StackFacts> {
    let mut doc = Document::new(xml);
    let mut root = doc
        .root_element()
        .map_err(|e| anyhow::anyhow!("not an XML answer: {e}"))?;
    if root.start_el().matches("ErrorResponse") {
        let (mut code, mut message) = (String::new(), String::new());
        while let Some(mut error) = root.next_tag() {
            if error.start_el().matches("Error") {
                while let Some(mut field) = error.next_tag() {
                    if field.start_el().matches("Code") {
                        code = text(&mut field)?;
                    } else if field.start_el().matches("Message") {
                        message = text(&mut field)?;
                    }
                }
            }
        }
        bail!("CloudFormation refused: {code}: {message}");
    }
    let mut facts = StackFacts::default();
    while let Some(mut result) = root.next_tag() {
        if !result.start_el().matches("DescribeStacksResult") {
            continue;
        }
        while let Some(mut stacks) = result.next_tag() {
            if !stacks.start_el().matches("Stacks") {
                continue;
            }
            if let Some(mut stack) = stacks.next_tag() {
                while let Some(mut field) = stack.next_tag() {
                    if field.start_el().matches("StackStatus") {
                        facts.status = text(&mut field)?;
                    } else if field.start_el().matches("Outputs") {
                        facts.outputs = pairs(&mut field, "OutputKey", "OutputValue")?;
                    } else if field.start_el().matches("Parameters") {
                        facts.parameters = pairs(&mut field, "ParameterKey", "ParameterValue")?;
                    }
                }
            }
        }
    }
    Ok(facts)
}

fn text(field: &mut ScopedDecoder<'_, '_>) -> Result<String> {
    try_data(field)
        .map(|value| value.into_owned())
        .map_err(|e| anyhow::anyhow!("unreadable XML: {e}"))
}

/// `<member><K>…</K><V>…</V></member>…` as a map.
fn pairs(
    list: &mut ScopedDecoder<'_, '_>,
    key: &str,
    value: &str,
) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    while let Some(mut member) = list.next_tag() {
        let (mut k, mut v) = (None, None);
        while let Some(mut field) = member.next_tag() {
            if field.start_el().matches(key) {
                k = Some(text(&mut field)?);
            } else if field.start_el().matches(value) {
                v = Some(text(&mut field)?);
            }
        }
        if let (Some(k), Some(v)) = (k, v) {
            out.insert(k, v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
  <DescribeStacksResult>
    <Stacks>
      <member>
        <StackName>calsync</StackName>
        <Parameters>
          <member><ParameterKey>SecretPrefix</ParameterKey><ParameterValue>calsync/prod/</ParameterValue></member>
          <member><ParameterKey>DispatchRate</ParameterKey><ParameterValue>rate(5 minutes)</ParameterValue></member>
        </Parameters>
        <StackStatus>UPDATE_COMPLETE</StackStatus>
        <Outputs>
          <member><OutputKey>TableName</OutputKey><OutputValue>calsync-Table-1</OutputValue><Description>x &amp; y</Description></member>
          <member><OutputKey>AuthUrl</OutputKey><OutputValue>https://a.lambda-url.eu-west-1.on.aws/</OutputValue></member>
          <member><OutputKey>WebhookUrl</OutputKey><OutputValue>https://w.lambda-url.eu-west-1.on.aws/</OutputValue></member>
          <member><OutputKey>JobQueueUrl</OutputKey><OutputValue>https://sqs.eu-west-1.amazonaws.com/1/jobs.fifo?a=1&amp;b=2</OutputValue></member>
        </Outputs>
      </member>
    </Stacks>
  </DescribeStacksResult>
</DescribeStacksResponse>"#;

    #[test]
    fn outputs_and_the_secret_prefix_become_the_variables() {
        let facts = parse(ANSWER).unwrap();
        assert_eq!(facts.status, "UPDATE_COMPLETE");
        let vars = facts.variables("calsync").unwrap();
        assert_eq!(vars["CALSYNC_TABLE"], "calsync-Table-1");
        assert_eq!(
            vars["CALSYNC_PUBLIC_URL"],
            "https://a.lambda-url.eu-west-1.on.aws/"
        );
        assert_eq!(
            vars["CALSYNC_WEBHOOK_URL"],
            "https://w.lambda-url.eu-west-1.on.aws/"
        );
        assert_eq!(
            vars["CALSYNC_QUEUE_URL"],
            "https://sqs.eu-west-1.amazonaws.com/1/jobs.fifo?a=1&b=2"
        );
        assert_eq!(vars["CALSYNC_SECRET_PREFIX"], "calsync/prod/");
    }

    #[test]
    fn errors_and_foreign_stacks_are_named() {
        let refused = r#"<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>Stack with id nope does not exist</Message></Error><RequestId>1</RequestId></ErrorResponse>"#;
        let error = parse(refused).unwrap_err().to_string();
        assert!(
            error.contains("ValidationError: Stack with id nope does not exist"),
            "{error}"
        );
        let foreign = StackFacts {
            status: "CREATE_COMPLETE".into(),
            ..StackFacts::default()
        };
        let error = foreign.variables("other").unwrap_err().to_string();
        assert!(error.contains("no output TableName"), "{error}");
    }
}
