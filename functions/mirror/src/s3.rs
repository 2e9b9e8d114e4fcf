//! The S3 calls of the mirror, all signed by the staging-side role: listing both
//! buckets as sorted streams, server-side copies (`CopyObject`, or
//! `UploadPartCopy` in the source's own part layout), the recorded source ETag,
//! and batched deletes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective, ObjectIdentifier, StorageClass,
    TaggingDirective,
};
use aws_sdk_s3::Client;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use understudy_shared::config::TagSelector;
use understudy_shared::{guard, Error, Result};

/// User metadata key (`x-amz-meta-understudy-source-etag`) on copies whose ETag
/// cannot equal the source's (SSE-KMS, or a single-part source copied in parts):
/// the source ETag the copy was made from.
pub const SOURCE_ETAG_KEY: &str = "understudy-source-etag";

/// S3 refuses `CopyObject` above 5 GiB and parts below 5 MiB (except the last).
pub const MAX_COPY_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// The smallest part S3 accepts (all but the last part).
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;
/// Part copies of one object in flight at once.
const PART_CONCURRENCY: usize = 16;

/// A bucket and key prefix.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix; empty for the whole bucket.
    #[serde(default)]
    pub prefix: String,
}

/// One object of a listing, its key relative to the listed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key without the prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag as S3 lists it (quoted).
    pub etag: String,
    /// Storage class, when S3 lists one.
    pub storage_class: Option<String>,
    /// Last-Modified, milliseconds since the epoch (0 when not listed).
    pub modified_ms: i64,
}

impl Listed {
    /// The number of parts of a multipart upload, from its ETag (`"…-N"`).
    pub fn parts(&self) -> Option<u64> {
        multipart_parts(&self.etag)
    }
}

/// The part count of a multipart ETag (`"<hex>-N"`), `None` for a plain one.
pub fn multipart_parts(etag: &str) -> Option<u64> {
    let (_, count) = etag.trim_matches('"').rsplit_once('-')?;
    count.parse().ok().filter(|&n| n > 0)
}

/// An ETag without its quotes, for comparing and recording.
pub fn bare_etag(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// How an object is copied: `CopyObject`, or a multipart copy with these part
/// sizes. A multipart source keeps its own part layout, so the copy's ETag (the
/// MD5 of the parts' MD5s) equals the source's.
pub fn copy_plan(object: &Listed, threshold: u64, part_size: u64) -> CopyPlan {
    if object.parts().is_some() {
        CopyPlan::SourceLayout
    } else if object.size > threshold.min(MAX_COPY_OBJECT_BYTES) {
        let part = part_size.max(object.size.div_ceil(MAX_PARTS)).max(MIN_PART_BYTES);
        let mut parts = Vec::new();
        let mut start = 0;
        while start < object.size {
            let len = part.min(object.size - start);
            parts.push((start, len));
            start += len;
        }
        CopyPlan::Parts(parts)
    } else {
        CopyPlan::Single
    }
}

/// See [`copy_plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyPlan {
    /// One `CopyObject` (metadata, tags and content type copied by S3).
    Single,
    /// `UploadPartCopy` with the source's own part sizes (read by `HeadObject`).
    SourceLayout,
    /// `UploadPartCopy` with these (start, length) parts.
    Parts(Vec<(u64, u64)>),
}

/// The S3 side of one mirror: a client and the two locations.
#[derive(Debug, Clone)]
pub struct Buckets {
    s3: Client,
    /// Where objects come from (only read).
    pub source: Location,
    /// Where they go (staging).
    pub target: Location,
}

fn s3_error<E>(operation: String, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if err.code() == Some("NoSuchBucket") {
        return Error::BucketNotFound(format!("{operation} failed: the bucket does not exist"));
    }
    Error::from_sdk(&operation, err)
}

fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    err.raw_response().is_some_and(|r| r.status().as_u16() == 404) && err.code() != Some("NoSuchBucket")
}

/// Percent-encodes a key for `x-amz-copy-source` (everything but unreserved
/// characters and `/`).
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `k1=v1&k2=v2`, URL-encoded, as the `x-amz-tagging` header wants it.
fn tagging_header(tags: &[(String, String)]) -> String {
    let encode = |s: &str| encode_key(s).replace('/', "%2F");
    tags.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

impl Buckets {
    /// The mirror from `source` to `target` through `s3`.
    pub fn new(s3: Client, source: Location, target: Location) -> Self {
        Self { s3, source, target }
    }

    fn source_key(&self, key: &str) -> String {
        format!("{}{key}", self.source.prefix)
    }

    fn target_key(&self, key: &str) -> String {
        format!("{}{key}", self.target.prefix)
    }

    fn copy_source(&self, key: &str) -> String {
        format!("{}/{}", self.source.bucket, encode_key(&self.source_key(key)))
    }

    /// The guard rail, checked before any write: the target is not the source
    /// bucket and carries the staging tag. Also proves the source is readable.
    pub async fn check_guard_rails(&self, tag: &TagSelector) -> Result<()> {
        guard::ensure_not_source(&self.target.bucket, &self.source.bucket)?;
        self.s3
            .list_objects_v2()
            .bucket(&self.source.bucket)
            .prefix(&self.source.prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| {
                s3_error(format!("s3:ListObjectsV2 on source bucket `{}`", self.source.bucket), e)
            })?;
        let tags = match self.s3.get_bucket_tagging().bucket(&self.target.bucket).send().await {
            Ok(out) => out.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect(),
            Err(err) if err.code() == Some("NoSuchTagSet") => Vec::new(),
            Err(err) => {
                return Err(s3_error(
                    format!("s3:GetBucketTagging on target bucket `{}`", self.target.bucket),
                    err,
                ))
            }
        };
        guard::ensure_staging(&format!("s3://{}", self.target.bucket), &tags, tag)
    }

    /// Streams the source (or target) listing from after `after` up to and
    /// including `until` (keys relative to the prefix), one page ahead.
    pub fn listing(&self, target: bool, after: Option<&str>, until: Option<&str>) -> Listing {
        let location = if target { &self.target } else { &self.source };
        Listing::start(self.s3.clone(), location.clone(), after.map(str::to_owned), until.map(str::to_owned))
    }

    /// The source ETag recorded on the target object, if it exists and has one.
    pub async fn recorded_source_etag(&self, key: &str) -> Result<Option<String>> {
        let target_key = self.target_key(key);
        match self.s3.head_object().bucket(&self.target.bucket).key(&target_key).send().await {
            Ok(out) => Ok(out.metadata().and_then(|m| m.get(SOURCE_ETAG_KEY)).cloned()),
            Err(err) if is_not_found(&err) => Ok(None),
            Err(err) => Err(s3_error(format!("s3:HeadObject `{target_key}` in the target"), err)),
        }
    }

    /// Copies `object` server-side, keeping metadata, content type, tags and
    /// storage class, with the source ETag pinned (`x-amz-copy-source-if-match`)
    /// so what is copied is what was compared.
    pub async fn copy(&self, object: &Listed, threshold: u64, part_size: u64) -> Result<()> {
        match copy_plan(object, threshold, part_size) {
            CopyPlan::Single => self.copy_single(object).await,
            plan => self.copy_multipart(object, plan).await,
        }
    }

    async fn copy_single(&self, object: &Listed) -> Result<()> {
        let target_key = self.target_key(&object.key);
        let mut request = self
            .s3
            .copy_object()
            .bucket(&self.target.bucket)
            .key(&target_key)
            .copy_source(self.copy_source(&object.key))
            .copy_source_if_match(&object.etag)
            .metadata_directive(MetadataDirective::Copy)
            .tagging_directive(TaggingDirective::Copy);
        if let Some(class) = object.storage_class.as_deref().filter(|c| *c != "STANDARD") {
            request = request.storage_class(StorageClass::from(class));
        }
        let out = request.send().await.map_err(|e| {
            s3_error(
                format!(
                    "s3:CopyObject s3://{}/{} -> s3://{}/{target_key}",
                    self.source.bucket,
                    self.source_key(&object.key),
                    self.target.bucket
                ),
                e,
            )
        })?;
        let copied_etag = out.copy_object_result().and_then(|r| r.e_tag()).unwrap_or_default();
        if bare_etag(copied_etag) != bare_etag(&object.etag) {
            // SSE-KMS (or another non-MD5 ETag): remember what this copy is of.
            self.record_source_etag(&target_key, object).await?;
        }
        Ok(())
    }

    /// Rewrites the target object's metadata in place, adding the source ETag.
    async fn record_source_etag(&self, target_key: &str, object: &Listed) -> Result<()> {
        let head = self
            .s3
            .head_object()
            .bucket(&self.target.bucket)
            .key(target_key)
            .send()
            .await
            .map_err(|e| s3_error(format!("s3:HeadObject `{target_key}` in the target"), e))?;
        let mut metadata = head.metadata().cloned().unwrap_or_default();
        metadata.insert(SOURCE_ETAG_KEY.to_owned(), bare_etag(&object.etag).to_owned());
        let mut request = self
            .s3
            .copy_object()
            .bucket(&self.target.bucket)
            .key(target_key)
            .copy_source(format!("{}/{}", self.target.bucket, encode_key(target_key)))
            .metadata_directive(MetadataDirective::Replace)
            .tagging_directive(TaggingDirective::Copy)
            .set_metadata(Some(metadata))
            .set_content_type(head.content_type().map(str::to_owned))
            .set_cache_control(head.cache_control().map(str::to_owned))
            .set_content_disposition(head.content_disposition().map(str::to_owned))
            .set_content_encoding(head.content_encoding().map(str::to_owned))
            .set_content_language(head.content_language().map(str::to_owned))
            .set_website_redirect_location(head.website_redirect_location().map(str::to_owned));
        if let Some(class) = object.storage_class.as_deref().filter(|c| *c != "STANDARD") {
            request = request.storage_class(StorageClass::from(class));
        }
        request
            .send()
            .await
            .map_err(|e| s3_error(format!("s3:CopyObject `{target_key}` (recording the source ETag)"), e))?;
        Ok(())
    }

    async fn copy_multipart(&self, object: &Listed, plan: CopyPlan) -> Result<()> {
        let source_key = self.source_key(&object.key);
        // The headers to keep, from the version that was listed.
        let head = self
            .s3
            .head_object()
            .bucket(&self.source.bucket)
            .key(&source_key)
            .if_match(&object.etag)
            .send()
            .await
            .map_err(|e| s3_error(format!("s3:HeadObject `{source_key}` in the source"), e))?;
        let parts = match plan {
            CopyPlan::Parts(parts) => parts,
            _ => self.source_layout(&source_key, object.parts().unwrap_or(1)).await?,
        };
        if parts.iter().map(|(_, len)| len).sum::<u64>() != object.size {
            // The part sizes come from a newer version; the next attempt lists again.
            return Err(Error::AwsTransient(format!(
                "`{source_key}` changed while its part layout was read; retry the step"
            )));
        }
        let tags = self
            .s3
            .get_object_tagging()
            .bucket(&self.source.bucket)
            .key(&source_key)
            .send()
            .await
            .map_err(|e| s3_error(format!("s3:GetObjectTagging `{source_key}` in the source"), e))?;
        let tags: Vec<(String, String)> =
            tags.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
        let mut metadata: HashMap<String, String> = head.metadata().cloned().unwrap_or_default();
        metadata.insert(SOURCE_ETAG_KEY.to_owned(), bare_etag(&object.etag).to_owned());

        let target_key = self.target_key(&object.key);
        let mut create = self
            .s3
            .create_multipart_upload()
            .bucket(&self.target.bucket)
            .key(&target_key)
            .set_metadata(Some(metadata))
            .set_content_type(head.content_type().map(str::to_owned))
            .set_cache_control(head.cache_control().map(str::to_owned))
            .set_content_disposition(head.content_disposition().map(str::to_owned))
            .set_content_encoding(head.content_encoding().map(str::to_owned))
            .set_content_language(head.content_language().map(str::to_owned))
            .set_website_redirect_location(head.website_redirect_location().map(str::to_owned));
        if !tags.is_empty() {
            create = create.tagging(tagging_header(&tags));
        }
        if let Some(class) = object.storage_class.as_deref().filter(|c| *c != "STANDARD") {
            create = create.storage_class(StorageClass::from(class));
        }
        let upload = create
            .send()
            .await
            .map_err(|e| s3_error(format!("s3:CreateMultipartUpload `{target_key}`"), e))?;
        let upload_id = upload.upload_id().unwrap_or_default().to_owned();

        let result = self.copy_parts(object, &target_key, &upload_id, &parts).await;
        let completed = match result {
            Ok(completed) => completed,
            Err(err) => {
                // Best effort: an incomplete upload costs storage until a lifecycle rule aborts it.
                let _ = self
                    .s3
                    .abort_multipart_upload()
                    .bucket(&self.target.bucket)
                    .key(&target_key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                return Err(err);
            }
        };
        self.s3
            .complete_multipart_upload()
            .bucket(&self.target.bucket)
            .key(&target_key)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
            .send()
            .await
            .map_err(|e| s3_error(format!("s3:CompleteMultipartUpload `{target_key}`"), e))?;
        Ok(())
    }

    /// The (start, length) of each part of a multipart source, from `HeadObject`
    /// with `partNumber` (its `Content-Length` is the part's). No If-Match: every
    /// `UploadPartCopy` pins the source ETag, which keeps the parts consistent.
    async fn source_layout(&self, source_key: &str, count: u64) -> Result<Vec<(u64, u64)>> {
        let mut tasks = JoinSet::new();
        let mut sizes = Vec::with_capacity(count as usize);
        for part in 1..=count {
            if tasks.len() >= PART_CONCURRENCY {
                sizes.push(tasks.join_next().await.expect("a task is running").expect("head task")?);
            }
            let request =
                self.s3.head_object().bucket(&self.source.bucket).key(source_key).part_number(part as i32);
            let operation = format!("s3:HeadObject `{source_key}` part {part} in the source");
            tasks.spawn(async move {
                let out = request.send().await.map_err(|e| s3_error(operation, e))?;
                Ok::<_, Error>((part, out.content_length().unwrap_or(0).max(0) as u64))
            });
        }
        while let Some(size) = tasks.join_next().await {
            sizes.push(size.expect("head task")?);
        }
        sizes.sort_unstable();
        let mut start = 0;
        Ok(sizes
            .into_iter()
            .map(|(_, len)| {
                let part = (start, len);
                start += len;
                part
            })
            .collect())
    }

    async fn copy_parts(
        &self,
        object: &Listed,
        target_key: &str,
        upload_id: &str,
        parts: &[(u64, u64)],
    ) -> Result<Vec<CompletedPart>> {
        let mut tasks = JoinSet::new();
        let mut completed = Vec::with_capacity(parts.len());
        let copy_source = Arc::new(self.copy_source(&object.key));
        for (index, &(start, len)) in parts.iter().enumerate() {
            if tasks.len() >= PART_CONCURRENCY {
                completed.push(tasks.join_next().await.expect("a task is running").expect("part task")?);
            }
            let part_number = index as i32 + 1;
            let request = self
                .s3
                .upload_part_copy()
                .bucket(&self.target.bucket)
                .key(target_key)
                .upload_id(upload_id)
                .part_number(part_number)
                .copy_source(copy_source.as_str())
                .copy_source_if_match(&object.etag)
                .copy_source_range(format!("bytes={start}-{}", start + len.max(1) - 1));
            let operation = format!(
                "s3:UploadPartCopy s3://{}/{} -> s3://{}/{target_key} part {part_number}",
                self.source.bucket,
                self.source_key(&object.key),
                self.target.bucket
            );
            tasks.spawn(async move {
                let out = request.send().await.map_err(|e| s3_error(operation, e))?;
                let etag = out.copy_part_result().and_then(|r| r.e_tag()).unwrap_or_default().to_owned();
                Ok::<_, Error>(CompletedPart::builder().part_number(part_number).e_tag(etag).build())
            });
        }
        while let Some(part) = tasks.join_next().await {
            completed.push(part.expect("part task")?);
        }
        completed.sort_by_key(|p| p.part_number());
        Ok(completed)
    }

    /// Deletes `keys` (relative) from the target in one `DeleteObjects` call
    /// (at most 1000 keys); any per-key error fails the batch.
    pub async fn delete_batch(&self, keys: &[String]) -> Result<()> {
        let objects = keys
            .iter()
            .map(|key| ObjectIdentifier::builder().key(self.target_key(key)).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidInput(format!("cannot build a delete request: {e}")))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| Error::InvalidInput(format!("cannot build a delete request: {e}")))?;
        let out = self
            .s3
            .delete_objects()
            .bucket(&self.target.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| s3_error(format!("s3:DeleteObjects in `{}`", self.target.bucket), e))?;
        if let Some(first) = out.errors().first() {
            let message = format!(
                "s3:DeleteObjects in `{}` failed for {} key(s), first `{}`: {}: {}",
                self.target.bucket,
                out.errors().len(),
                first.key().unwrap_or_default(),
                first.code().unwrap_or_default(),
                first.message().unwrap_or_default()
            );
            return Err(match first.code() {
                Some("AccessDenied") => Error::AccessDenied(message),
                Some("SlowDown") => Error::Throttled(message),
                Some("InternalError") => Error::AwsTransient(message),
                _ => Error::AwsRequestFailed(message),
            });
        }
        Ok(())
    }
}

/// A sorted listing streamed from a background task, one page ahead of the
/// merge, so memory holds at most a few pages whatever the bucket's size.
#[derive(Debug)]
pub struct Listing {
    pages: mpsc::Receiver<Result<Vec<Listed>>>,
    page: VecDeque<Listed>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listing {
    fn start(s3: Client, location: Location, after: Option<String>, until: Option<String>) -> Self {
        let (sender, pages) = mpsc::channel(1);
        let task = tokio::spawn(async move {
            let start_after = after.map(|a| format!("{}{a}", location.prefix));
            let mut continuation: Option<String> = None;
            loop {
                let answer = s3
                    .list_objects_v2()
                    .bucket(&location.bucket)
                    .prefix(&location.prefix)
                    .set_start_after(if continuation.is_none() { start_after.clone() } else { None })
                    .set_continuation_token(continuation.clone())
                    .send()
                    .await;
                let out = match answer {
                    Ok(out) => out,
                    Err(err) => {
                        let operation = format!("s3:ListObjectsV2 on `{}`", location.bucket);
                        let _ = sender.send(Err(s3_error(operation, err))).await;
                        return;
                    }
                };
                let mut page = Vec::with_capacity(out.contents().len());
                let mut past_end = false;
                for object in out.contents() {
                    let full = object.key().unwrap_or_default();
                    let Some(key) = full.strip_prefix(location.prefix.as_str()) else { continue };
                    if until.as_deref().is_some_and(|until| key > until) {
                        past_end = true;
                        break;
                    }
                    page.push(Listed {
                        key: key.to_owned(),
                        size: object.size().unwrap_or(0).max(0) as u64,
                        etag: object.e_tag().unwrap_or_default().to_owned(),
                        storage_class: object.storage_class().map(|c| c.as_str().to_owned()),
                        modified_ms: object.last_modified().and_then(|t| t.to_millis().ok()).unwrap_or(0),
                    });
                }
                if !page.is_empty() && sender.send(Ok(page)).await.is_err() {
                    return;
                }
                continuation = out.next_continuation_token().map(str::to_owned);
                if past_end || !out.is_truncated().unwrap_or(false) || continuation.is_none() {
                    return;
                }
            }
        });
        Self { pages, page: VecDeque::new(), task }
    }

    /// The next object, without taking it; `None` at the end.
    pub async fn peek(&mut self) -> Result<Option<&Listed>> {
        while self.page.is_empty() {
            match self.pages.recv().await {
                Some(page) => self.page = page?.into(),
                None => return Ok(None),
            }
        }
        Ok(self.page.front())
    }

    /// Takes the object [`Listing::peek`] returned.
    pub fn pop(&mut self) -> Option<Listed> {
        self.page.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(size: u64, etag: &str) -> Listed {
        Listed { key: "k".into(), size, etag: etag.into(), storage_class: None, modified_ms: 0 }
    }

    #[test]
    fn multipart_etags_give_their_part_count() {
        assert_eq!(multipart_parts("\"9b2cf535f27731c974343645a3985328-3\""), Some(3));
        assert_eq!(multipart_parts("\"9b2cf535f27731c974343645a3985328\""), None);
        assert_eq!(multipart_parts("\"abc-x\""), None);
    }

    #[test]
    fn multipart_sources_keep_their_layout_and_big_single_parts_are_split() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(copy_plan(&listed(10, "\"a-2\""), 5 * MIB, 5 * MIB), CopyPlan::SourceLayout);
        assert_eq!(copy_plan(&listed(5 * MIB, "\"a\""), 5 * MIB, 5 * MIB), CopyPlan::Single);
        assert_eq!(
            copy_plan(&listed(12 * MIB, "\"a\""), 6 * MIB, 5 * MIB),
            CopyPlan::Parts(vec![(0, 5 * MIB), (5 * MIB, 5 * MIB), (10 * MIB, 2 * MIB)])
        );
        // Never more than 10,000 parts.
        let huge = copy_plan(&listed(100_000 * MIB, "\"a\""), 5 * MIB, 5 * MIB);
        let CopyPlan::Parts(parts) = huge else { panic!() };
        assert!(parts.len() <= 10_000);
        assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), 100_000 * MIB);
    }

    #[test]
    fn copy_source_keys_are_percent_encoded_but_slashes_kept() {
        assert_eq!(encode_key("a b/c+d%e//ü/"), "a%20b/c%2Bd%25e//%C3%BC/");
        assert_eq!(tagging_header(&[("a b".into(), "x/y&z".into())]), "a%20b=x%2Fy%26z");
    }
}
