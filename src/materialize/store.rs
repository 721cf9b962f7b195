//! Opening the object store behind a URL (`s3://`, `gs://`, `az://`, `memory://`).
//!
//! Settings come from the target's `storage:` (endpoint, region, path style, plain HTTP,
//! credentials, retries) on top of the provider's usual environment variables and instance
//! credentials (`AmazonS3Builder::from_env` and its Google and Azure twins).
//!
//! Each provider is a Cargo feature (`s3`, `gcs`, `azure`, all on by default and in the wheel);
//! a build without one names the feature when a target asks for its URLs.

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
use std::str::FromStr;
use std::sync::Arc;

#[cfg(feature = "s3")]
use object_store::aws::AmazonS3Builder;
#[cfg(feature = "azure")]
use object_store::azure::MicrosoftAzureBuilder;
#[cfg(feature = "gcs")]
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
use object_store::{BackoffConfig, RetryConfig};
use object_store::{ObjectStore, ObjectStoreScheme};
use url::Url;

use super::MaterializeError;
use crate::project::StorageSettings;

/// A store opened for a URL.
#[derive(Debug, Clone)]
pub struct OpenedStore {
    /// The store at the URL's scheme and authority (`s3://bucket`), as DataFusion registers it.
    pub store: Arc<dyn ObjectStore>,
    /// `s3://bucket`: the URL DataFusion knows the store by.
    pub base: Url,
    /// The path inside the store the URL points at (`lms/warehouse`).
    pub prefix: StorePath,
}

/// Whether `location` is a URL of a store other than the local file system.
pub fn is_store_url(location: &str) -> bool {
    location.contains("://") && !location.starts_with("file://")
}

/// Opens the store a URL points into.
pub fn open(location: &str, settings: &StorageSettings) -> Result<OpenedStore, MaterializeError> {
    let setup = |message: String| MaterializeError::Setup(message);
    let url = Url::parse(location).map_err(|error| setup(format!("'{location}' is not a valid URL: {error}")))?;
    let (scheme, path) = ObjectStoreScheme::parse(&url).map_err(|_| {
        setup(format!(
            "'{location}': unsupported storage scheme '{}'; use s3://, gs://, az://, memory:// or a local path",
            url.scheme()
        ))
    })?;
    let prefix = StorePath::parse(path).map_err(|error| setup(format!("'{location}': {error}")))?;
    let base = Url::parse(&url[..url::Position::BeforePath])
        .map_err(|error| setup(format!("'{location}' has no bucket or container: {error}")))?;
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::Memory => Arc::new(InMemory::new()),
        ObjectStoreScheme::AmazonS3 => s3(location, settings)?,
        ObjectStoreScheme::GoogleCloudStorage => gcs(location, settings)?,
        ObjectStoreScheme::MicrosoftAzure => azure(location, settings)?,
        ObjectStoreScheme::Local => {
            return Err(setup(format!("'{location}' is a local path; open it as a folder")));
        }
        other => {
            return Err(setup(format!(
                "'{location}': {other:?} URLs cannot hold a warehouse; use s3://, gs://, az:// or memory://"
            )))
        }
    };
    Ok(OpenedStore { store, base, prefix })
}

#[cfg(feature = "s3")]
fn s3(location: &str, settings: &StorageSettings) -> Result<Arc<dyn ObjectStore>, MaterializeError> {
    let builder = AmazonS3Builder::from_env()
        .with_url(location)
        .with_retry(retry_config(settings)?);
    let builder = configure(
        builder,
        s3_options(settings),
        "an S3 setting of object_store",
        AmazonS3Builder::with_config,
    )?;
    Ok(Arc::new(
        builder.build().map_err(|error| describe_build_error("S3", error))?,
    ))
}

#[cfg(feature = "gcs")]
fn gcs(location: &str, settings: &StorageSettings) -> Result<Arc<dyn ObjectStore>, MaterializeError> {
    let builder = GoogleCloudStorageBuilder::from_env()
        .with_url(location)
        .with_retry(retry_config(settings)?);
    let builder = configure(
        builder,
        common_options(settings),
        "a Google Cloud Storage setting",
        GoogleCloudStorageBuilder::with_config,
    )?;
    Ok(Arc::new(
        builder.build().map_err(|error| describe_build_error("GCS", error))?,
    ))
}

#[cfg(feature = "azure")]
fn azure(location: &str, settings: &StorageSettings) -> Result<Arc<dyn ObjectStore>, MaterializeError> {
    let builder = MicrosoftAzureBuilder::from_env()
        .with_url(location)
        .with_retry(retry_config(settings)?);
    let builder = configure(
        builder,
        common_options(settings),
        "an Azure setting",
        MicrosoftAzureBuilder::with_config,
    )?;
    Ok(Arc::new(
        builder.build().map_err(|error| describe_build_error("Azure", error))?,
    ))
}

/// Hands each `(key, value)` to a provider's builder as one of its config keys; a key the
/// provider does not know is an error that names it.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn configure<Builder, Key: FromStr>(
    mut builder: Builder,
    options: Vec<(String, String)>,
    kind: &str,
    with_config: impl Fn(Builder, Key, String) -> Builder,
) -> Result<Builder, MaterializeError> {
    for (key, value) in options {
        let parsed =
            Key::from_str(&key).map_err(|_| MaterializeError::Setup(format!("storage: '{key}' is not {kind}")))?;
        builder = with_config(builder, parsed, value);
    }
    Ok(builder)
}

/// A provider this binary was built without: the error names the Cargo feature that brings it.
#[cfg(any(not(feature = "s3"), not(feature = "gcs"), not(feature = "azure")))]
fn not_built(location: &str, provider: &str, feature: &str) -> MaterializeError {
    MaterializeError::Setup(format!(
        "'{location}': this tidemark was built without {provider} storage; build it with the `{feature}` \
         Cargo feature (`cargo install --path . --features {feature}`; the default features and the wheel include it)"
    ))
}

#[cfg(not(feature = "s3"))]
fn s3(location: &str, _: &StorageSettings) -> Result<Arc<dyn ObjectStore>, MaterializeError> {
    Err(not_built(location, "S3", "s3"))
}

#[cfg(not(feature = "gcs"))]
fn gcs(location: &str, _: &StorageSettings) -> Result<Arc<dyn ObjectStore>, MaterializeError> {
    Err(not_built(location, "Google Cloud", "gcs"))
}

#[cfg(not(feature = "azure"))]
fn azure(location: &str, _: &StorageSettings) -> Result<Arc<dyn ObjectStore>, MaterializeError> {
    Err(not_built(location, "Azure", "azure"))
}

/// Settings every provider understands: plain HTTP, connection timeout and raw options.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn common_options(settings: &StorageSettings) -> Vec<(String, String)> {
    let mut options = Vec::new();
    if let Some(allow) = settings.allow_http {
        options.push(("allow_http".into(), allow.to_string()));
    }
    options.push((
        "connect_timeout".into(),
        settings.connect_timeout.clone().unwrap_or_else(|| "5s".into()),
    ));
    options.push((
        "timeout".into(),
        settings.request_timeout.clone().unwrap_or_else(|| "30s".into()),
    ));
    for (key, value) in &settings.options {
        options.push((key.clone(), value.expose().to_string()));
    }
    options
}

#[cfg(feature = "s3")]
fn s3_options(settings: &StorageSettings) -> Vec<(String, String)> {
    let mut options = Vec::new();
    if let Some(endpoint) = &settings.endpoint {
        options.push(("aws_endpoint".into(), endpoint.clone()));
    }
    if let Some(region) = &settings.region {
        options.push(("aws_region".into(), region.clone()));
    }
    if let Some(path_style) = settings.path_style {
        options.push(("aws_virtual_hosted_style_request".into(), (!path_style).to_string()));
    }
    for (key, value) in [
        ("aws_access_key_id", &settings.access_key_id),
        ("aws_secret_access_key", &settings.secret_access_key),
        ("aws_session_token", &settings.session_token),
    ] {
        if let Some(value) = value.as_ref().filter(|v| !v.expose().is_empty()) {
            options.push((key.into(), value.expose().to_string()));
        }
    }
    options.extend(common_options(settings));
    options
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn retry_config(settings: &StorageSettings) -> Result<RetryConfig, MaterializeError> {
    let retry_timeout = match &settings.retry_timeout {
        Some(text) => crate::project::profiles::parse_duration(text)
            .map_err(|message| MaterializeError::Setup(format!("storage: retry_timeout: {message}")))?,
        None => std::time::Duration::from_secs(180),
    };
    Ok(RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: settings.max_retries.unwrap_or(10),
        retry_timeout,
    })
}

/// Builder errors name the missing setting; they never contain a credential's value.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn describe_build_error(provider: &str, error: object_store::Error) -> MaterializeError {
    MaterializeError::Setup(format!("{provider} storage settings: {error}"))
}

/// Which `storage:` setting a store error most likely points at.
pub fn hint(message: &str) -> Option<&'static str> {
    let lower = message.to_ascii_lowercase();
    let pairs: [(&[&str], &'static str); 10] = [
        (
            &["invalidaccesskeyid", "signaturedoesnotmatch", "accessdenied", "403 forbidden", "401 unauthorized"],
            "the store rejected the credentials: check storage.access_key_id and storage.secret_access_key (or the AWS_* environment)",
        ),
        (
            &["nosuchbucket", "bucket does not exist", "the specified bucket"],
            "the bucket does not exist: check the bucket in the warehouse URL",
        ),
        (
            &[
                "connection refused",
                "tcp connect error",
                "dns error",
                "error trying to connect",
                "connect timeout",
            ],
            "cannot connect to the store: check storage.endpoint and that the server is running",
        ),
        (
            &["operation timed out", "timed out"],
            "the store did not answer in time, even after retries: check storage.request_timeout, retry_timeout and the server's health",
        ),
        (
            &[
                "connection closed before message completed",
                "connection reset",
                "broken pipe",
                "incomplete message",
                "unexpected eof",
            ],
            "the store closed the connection mid-request, even after retries: check the server's health (storage.max_retries, retry_timeout)",
        ),
        (
            &["server error", "status: 5", "http status server error", "internalerror", "service unavailable", "slowdown"],
            "the store answered with a server error (HTTP 5xx), even after retries: check the server's health (storage.max_retries, retry_timeout)",
        ),
        (
            &["error sending request"],
            "cannot connect to the store: check storage.endpoint and that the server is running",
        ),
        (
            &["http scheme is not allowed", "url scheme is not allowed", "builder error for url"],
            "plain http endpoints need storage.allow_http: true",
        ),
        (
            &["missing region", "authorizationheadermalformed", "region"],
            "check storage.region",
        ),
        (&["missing bucket name", "missing container"], "the warehouse URL needs a bucket or container"),
    ];
    pairs
        .iter()
        .find(|(needles, _)| needles.iter().any(|needle| lower.contains(needle)))
        .map(|(_, hint)| *hint)
}

#[cfg(all(test, feature = "s3", feature = "gcs"))]
mod tests {
    use super::*;

    #[test]
    fn a_storage_option_the_provider_does_not_know_is_named() {
        let settings: StorageSettings = serde_yaml::from_str("options: {no_such_key: '1'}").expect("settings");
        for (url, kind) in [
            ("s3://bucket/prefix", "an S3 setting of object_store"),
            ("gs://bucket/prefix", "a Google Cloud Storage setting"),
        ] {
            let error = open(url, &settings).expect_err("an unknown key fails");
            assert!(
                error
                    .to_string()
                    .contains(&format!("storage: 'no_such_key' is not {kind}")),
                "{url}: {error}"
            );
        }
    }
}
