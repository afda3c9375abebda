//! The AWS settings every AWS client of sluice shares.
//!
//! Region, credentials and endpoints come from the standard AWS configuration, resolved once per
//! process by `aws-config`: environment variables (`AWS_REGION`, `AWS_ACCESS_KEY_ID`,
//! `AWS_PROFILE`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`, …), the shared config and
//! credentials files (profiles, SSO, `credential_process`), web identity, ECS and EC2 instance
//! roles. The SNS publisher, the Athena engine and S3 lakes (through `object_store`) all use it,
//! so MinIO, LocalStack or moto work unchanged with `AWS_ENDPOINT_URL` set.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::{
    CredentialProvider,
    aws::{AmazonS3, AmazonS3Builder, AwsCredential},
};
use tokio::sync::{Mutex, OnceCell};

pub use aws_config;

/// The region used when no AWS setting names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The process-wide AWS configuration, loaded on first use.
pub async fn sdk_config() -> &'static SdkConfig {
    static CONFIG: OnceCell<SdkConfig> = OnceCell::const_new();
    CONFIG
        .get_or_init(|| async {
            let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
            if config.region().is_some() {
                config
            } else {
                config.into_builder().region(aws_config::Region::from_static(DEFAULT_REGION)).build()
            }
        })
        .await
}

/// The endpoint for one service: `AWS_ENDPOINT_URL_<SERVICE>`, else `AWS_ENDPOINT_URL` (or the
/// `endpoint_url` of the profile), else `None` for the service's public endpoint.
pub fn endpoint_for(config: &SdkConfig, service_env_suffix: &str) -> Option<String> {
    std::env::var(format!("AWS_ENDPOINT_URL_{service_env_suffix}"))
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| config.endpoint_url().map(str::to_owned))
}

/// An AWS SDK error with all its causes (`call failed: service error: …`), then `hint`.
pub fn error_text(call: &str, e: &(dyn std::error::Error + 'static), hint: &str) -> String {
    let mut text = format!("{call} failed");
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.push_str("; ");
    text.push_str(hint);
    text
}

/// The errors of `sluice-aws` of its own (the stores' errors are `object_store`'s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An `s3://` URL without a bucket name.
    #[error("no bucket name; use s3://bucket/prefix")]
    NoBucket {
        /// The URL as given.
        url: String,
    },
}

/// A bucket and key prefix parsed from `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket name.
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket[/prefix]`; `None` for other schemes, an error for an `s3://` URL
    /// without a bucket.
    pub fn parse(url: &str) -> Option<Result<Self, Error>> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Some(Err(Error::NoBucket { url: url.to_owned() }));
        }
        Some(Ok(Self { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() }))
    }
}

/// An S3 object store for `bucket`, with the region, credentials and endpoint of
/// [`sdk_config`]. A custom endpoint (`AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`) is addressed
/// path-style, as MinIO, moto and most S3-compatible stores expect, unless
/// `AWS_S3_VIRTUAL_HOSTED_STYLE=true`.
pub async fn s3_store(bucket: &str) -> object_store::Result<AmazonS3> {
    let config = sdk_config().await;
    let region = config.region().map_or(DEFAULT_REGION, |r| r.as_ref());
    let mut b = AmazonS3Builder::new().with_bucket_name(bucket).with_region(region);
    if let Some(endpoint) = endpoint_for(config, "S3") {
        let virtual_hosted = std::env::var("AWS_S3_VIRTUAL_HOSTED_STYLE").is_ok_and(|v| v == "true");
        b = b
            .with_allow_http(endpoint.starts_with("http://"))
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(virtual_hosted);
    }
    match config.credentials_provider() {
        Some(provider) => b = b.with_credentials(Arc::new(SdkCredentials::new(provider))),
        None => b = b.with_skip_signature(true),
    }
    b.build()
}

/// Hands `aws-config`'s credential chain to `object_store`, caching credentials until five
/// minutes before they expire.
#[derive(Debug)]
struct SdkCredentials {
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl SdkCredentials {
    fn new(provider: SharedCredentialsProvider) -> Self {
        Self { provider, cached: Mutex::new(None) }
    }
}

#[async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        const REFRESH_BEFORE: Duration = Duration::from_secs(300);
        let mut cached = self.cached.lock().await;
        if let Some((cred, expiry)) = cached.as_ref()
            && expiry.is_none_or(|e| SystemTime::now() + REFRESH_BEFORE < e)
        {
            return Ok(Arc::clone(cred));
        }
        let c = self.provider.provide_credentials().await.map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: format!(
                "no AWS credentials: {e}; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
                 or run on a host with an IAM role"
            )
            .into(),
        })?;
        let cred = Arc::new(AwsCredential {
            key_id: c.access_key_id().to_owned(),
            secret_key: c.secret_access_key().to_owned(),
            token: c.session_token().map(str::to_owned),
        });
        *cached = Some((Arc::clone(&cred), c.expiry()));
        Ok(cred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_urls() {
        let l = S3Location::parse("s3://b/logs/lake/").expect("s3").expect("valid");
        assert_eq!(l, S3Location { bucket: "b".into(), prefix: "logs/lake".into() });
        let l = S3Location::parse("s3://b").expect("s3").expect("valid");
        assert_eq!(l.prefix, "");
        assert!(S3Location::parse("s3:///x").expect("s3").is_err());
        assert!(S3Location::parse("/tmp/lake").is_none());
    }
}
