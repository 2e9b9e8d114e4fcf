"""Where moto 5.2.5's S3 is less faithful than AWS in what the mirror relies on,
patched to behave as AWS does. Each patch cites the AWS behaviour it reproduces;
patches only make the emulator stricter or more complete, never looser.

Object tags: moto keeps tags in a tag store per account, and looks a key's tags up
in the *caller's* store. AWS keeps them with the object, so a reader in another
account (through the bucket policy) sees them:
- `GetObjectTagging` on another account's object returns that object's tags
  (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObjectTagging.html);
- `CopyObject` with `x-amz-tagging-directive: COPY` (the default) gives the copy the
  source object's tags, wherever the source bucket lives
  (https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html).
In moto 5.2.5 both come back empty across accounts.

Conditional writes: on AWS a `PutObject` with `If-None-Match: *` or `If-Match: <etag>`
is atomic: of two concurrent writes with the same condition exactly one succeeds,
the other gets 412 PreconditionFailed (or 409 ConditionalRequestConflict)
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html).
moto 5.2.5 checks the condition, then writes, with nothing in between: two threads
can both pass the check. Conditional `PutObject`s are serialised here, so the check
and the write happen as one step (the run lock, understudy_shared::lease, relies on it).
"""

from __future__ import annotations

from typing import Any

_installed = False


def install() -> None:
    """Patches moto's S3 backend (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    from moto.s3.models import S3Backend, s3_backends

    def owner_tagger(backend: S3Backend, key: Any) -> Any:
        account = getattr(key, "account_id", None) or backend.account_id
        if account == backend.account_id:
            return backend.tagger
        return s3_backends[account][backend.partition].tagger

    def get_object_tagging(self: S3Backend, key: Any) -> dict[str, list[dict[str, str]]]:
        return owner_tagger(self, key).list_tags_for_resource(key.arn)

    original_copy_object = S3Backend.copy_object

    def copy_object(self: S3Backend, src_key: Any, dest_bucket_name: str, dest_key_name: str,
                    *args: Any, **kwargs: Any) -> None:
        original_copy_object(self, src_key, dest_bucket_name, dest_key_name, *args, **kwargs)
        source_tagger = owner_tagger(self, src_key)
        if source_tagger is not self.tagger:
            new_key = self.get_object(dest_bucket_name, dest_key_name)
            tags = source_tagger.list_tags_for_resource(src_key.arn)["Tags"]
            self.tagger.delete_all_tags_for_resource(new_key.arn)
            if tags:
                self.tagger.tag_resource(new_key.arn, tags)

    import threading

    from moto.s3.responses import S3Response

    conditional_writes = threading.Lock()
    original_put_object = S3Response.put_object

    def put_object(self: S3Response) -> Any:
        if self.headers.get("If-None-Match") or self.headers.get("If-Match"):
            with conditional_writes:
                return original_put_object(self)
        return original_put_object(self)

    S3Response.put_object = put_object  # type: ignore[method-assign]
    S3Backend.get_object_tagging = get_object_tagging  # type: ignore[method-assign]
    S3Backend.copy_object = copy_object  # type: ignore[method-assign]
