//! S3 worlds for the mirror's tests: a source bucket in the production account
//! (with the bucket policy that lets staging read it, as on AWS), target buckets
//! in staging, objects with metadata, tags and multipart layouts, and listings
//! to compare the two sides.

use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, StorageClass, Tag, Tagging};
use serde_json::{json, Value};
use understudy_shared::aws::s3_client;

use crate::accounts::STAGING_ACCOUNT;
use crate::{Accounts, LocalStack};

/// One object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Key (full).
    pub key: String,
    /// Size in bytes.
    pub size: i64,
    /// ETag as listed.
    pub etag: String,
}

/// How an object is put.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Content type.
    pub content_type: Option<String>,
    /// User metadata.
    pub metadata: HashMap<String, String>,
    /// Object tags.
    pub tags: Vec<(String, String)>,
    /// Storage class (`STANDARD_IA`, `GLACIER`, ...).
    pub storage_class: Option<String>,
    /// Cache-Control.
    pub cache_control: Option<String>,
}

/// The production bucket policy that grants the staging account read access
/// (what docs/mirror.md asks production to apply).
pub fn source_bucket_policy(bucket: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "UnderstudyMirrorList",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{STAGING_ACCOUNT}:root")},
                "Action": "s3:ListBucket",
                "Resource": format!("arn:aws:s3:::{bucket}")
            },
            {
                "Sid": "UnderstudyMirrorRead",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{STAGING_ACCOUNT}:root")},
                "Action": ["s3:GetObject", "s3:GetObjectTagging"],
                "Resource": format!("arn:aws:s3:::{bucket}/*")
            }
        ]
    })
}

impl Accounts {
    /// S3 in production (path-style against the emulator).
    pub fn production_s3(&self) -> aws_sdk_s3::Client {
        s3_client(&self.production)
    }

    /// S3 in staging.
    pub fn staging_s3(&self) -> aws_sdk_s3::Client {
        s3_client(&self.staging)
    }

    /// A production bucket with the bucket policy granting staging read access.
    pub async fn create_source_bucket(&self, bucket: &str) {
        let s3 = self.production_s3();
        s3.create_bucket().bucket(bucket).send().await.expect("create the source bucket");
        s3.put_bucket_policy()
            .bucket(bucket)
            .policy(source_bucket_policy(bucket).to_string())
            .send()
            .await
            .expect("put the source bucket policy");
    }

    /// A staging bucket, tagged `understudy:environment=staging` when `tagged`.
    pub async fn create_target_bucket(&self, bucket: &str, tagged: bool) {
        let s3 = self.staging_s3();
        s3.create_bucket().bucket(bucket).send().await.expect("create the target bucket");
        if tagged {
            let tag = Tag::builder().key("understudy:environment").value("staging").build().unwrap();
            s3.put_bucket_tagging()
                .bucket(bucket)
                .tagging(Tagging::builder().tag_set(tag).build().unwrap())
                .send()
                .await
                .expect("tag the target bucket");
        }
    }
}

/// Puts `body` at `bucket/key`.
pub async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) {
    put_with(s3, bucket, key, body, &PutOptions::default()).await;
}

/// Puts `body` at `bucket/key` with `options`.
pub async fn put_with(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8], options: &PutOptions) {
    let tagging = options.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .set_content_type(options.content_type.clone())
        .set_cache_control(options.cache_control.clone())
        .set_metadata((!options.metadata.is_empty()).then(|| options.metadata.clone()))
        .set_tagging((!tagging.is_empty()).then_some(tagging))
        .set_storage_class(options.storage_class.as_deref().map(StorageClass::from))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {bucket}/{key}: {e:?}"));
}

/// Uploads `parts` as one multipart object, with `options` (tags, metadata, type).
pub async fn put_multipart(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    parts: &[Vec<u8>],
    options: &PutOptions,
) {
    let tagging = options.tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .set_content_type(options.content_type.clone())
        .set_metadata((!options.metadata.is_empty()).then(|| options.metadata.clone()))
        .set_tagging((!tagging.is_empty()).then_some(tagging))
        .send()
        .await
        .expect("create multipart upload");
    let upload_id = upload.upload_id().unwrap();
    let mut completed = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        let number = index as i32 + 1;
        let out = s3
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .expect("upload part");
        completed.push(CompletedPart::builder().part_number(number).e_tag(out.e_tag().unwrap()).build());
    }
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
        .send()
        .await
        .expect("complete multipart upload");
}

/// Every object of `bucket` (under `prefix`), in listing order.
pub async fn list(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<ListedObject> {
    let mut objects = Vec::new();
    let mut pages = s3.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        for object in page.expect("list objects").contents() {
            objects.push(ListedObject {
                key: object.key().unwrap().to_owned(),
                size: object.size().unwrap_or(0),
                etag: object.e_tag().unwrap_or_default().to_owned(),
            });
        }
    }
    objects
}

/// The bytes of `bucket/key`.
pub async fn body(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let out =
        s3.get_object().bucket(bucket).key(key).send().await.unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// The tags of `bucket/key`, sorted.
pub async fn object_tags(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<(String, String)> {
    let out = s3.get_object_tagging().bucket(bucket).key(key).send().await.expect("get object tagging");
    let mut tags: Vec<_> = out.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
    tags.sort();
    tags
}

/// Runs `request` through the mirror function until it answers `done`, passing
/// each answer's `next` on. Returns every answer.
pub fn mirror_until_done(stack: &LocalStack, request: &Value, max_invocations: usize) -> Vec<Value> {
    let mut answers = Vec::new();
    let mut next = request.clone();
    loop {
        let invocation = stack.invoke("mirror", &next);
        let answer = invocation.clone().ok();
        answers.push(answer.clone());
        if answer["done"] == true {
            return answers;
        }
        assert!(answers.len() < max_invocations, "not done after {max_invocations} invocations: {answer}");
        next = answer["next"].clone();
    }
}
