"""S3-compatible object storage (AWS S3, MinIO, Ceph, R2, ...) through boto3.

Part files are multipart uploads at their final key, completed only by the commit (nothing of an
unfinished run is ever listed); small objects are single PUTs (atomic per object); the lease uses
conditional writes (``If-None-Match: *`` to create, ``If-Match`` to renew or take over).
botocore retries throttling (503 SlowDown), 5xx and dropped connections ("standard" mode).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import IO, Any

from ..errors import StorageAuthError, StorageError, UnsafeRemoval
from . import ObjectInfo, Storage, Upload, basename, is_staging_key

PART_BYTES = 5 * 1024 * 1024  # S3's smallest part (but the last): memory per open part file
_AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
               "AllAccessDisabled"}


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Upload(Upload):
    """A multipart upload fed by a writer: parts go out as the buffer fills (the walk and the
    upload overlap), and the upload is left pending at :meth:`finish` for the commit to complete."""

    def __init__(self, storage: S3Storage, key: str, *, complete: bool = False) -> None:
        self.storage = storage
        self.key = key
        self.complete = complete  # completed at finish (a spooled file), not left for the commit
        self.target = self  # ParquetWriter writes to this file object
        self._full = storage.full(key)
        self._buffer = io.BytesIO()  # handed to botocore as the part's body, never copied
        self._parts: list[list[Any]] = []
        self._written = 0
        self.closed = False
        self.upload_id = storage.call("create_multipart_upload", Bucket=storage.bucket, Key=self._full)["UploadId"]

    # the file object pyarrow writes to
    def write(self, data: bytes | memoryview) -> int:
        self._buffer.write(data)
        self._written += len(data)
        if self._buffer.tell() >= PART_BYTES:
            self._send()
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        return None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:  # pyarrow closes what it writes to; finish() decides
        return None

    def _send(self) -> None:
        number = len(self._parts) + 1
        self._buffer.seek(0)
        answer = self.storage.call("upload_part", Bucket=self.storage.bucket, Key=self._full, UploadId=self.upload_id,
                                   PartNumber=number, Body=self._buffer)
        self._parts.append([number, answer["ETag"]])
        self._buffer = io.BytesIO()

    def finish(self) -> dict[str, Any]:
        if self._buffer.tell() or not self._parts:
            self._send()
        self.closed = True
        state = {"bytes": self._written, "upload_id": self.upload_id, "etags": [e for _, e in self._parts]}
        if self.complete:
            self.storage.complete_upload(self.key, state)
            return {"bytes": self._written}
        return state

    def abort(self) -> None:
        self._buffer = io.BytesIO()
        self.storage.abort_upload(self.key, self.upload_id)


class S3ReadFile(io.RawIOBase):
    """Ranged GETs: pyarrow reads a Parquet footer and the columns it needs, not the whole object."""

    def __init__(self, storage: S3Storage, key: str, *, complete: bool = False) -> None:
        self.storage = storage
        self.key = key
        self.complete = complete  # completed at finish (a spooled file), not left for the commit
        self.size = int(storage.call("head_object", Bucket=storage.bucket, Key=storage.full(key))["ContentLength"])
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.size - self.position)
        if want <= 0:
            return 0
        body = self.storage.call("get_object", Bucket=self.storage.bucket, Key=self.storage.full(self.key),
                                 Range=f"bytes={self.position}-{self.position + want - 1}")["Body"].read()
        buffer[: len(body)] = body
        self.position += len(body)
        return len(body)


def multipart_etag(etags: list[str]) -> str:
    """The ETag S3 gives a completed multipart upload: md5 of the parts' md5s, then ``-N``."""
    digest = hashlib.md5(b"".join(bytes.fromhex(e.strip('"')) for e in etags), usedforsecurity=False)
    return f'"{digest.hexdigest()}-{len(etags)}"'


class S3Storage(Storage):
    kind = "s3"

    def __init__(self, client: Any, bucket: str, prefix: str, *, endpoint: str | None = None,
                 probe: Any = None) -> None:
        self.client = client
        self.probe = probe or client  # few retries: a bucket out of reach is reported in seconds
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.endpoint = endpoint

    @classmethod
    def from_url(cls, url: str, *, env: Mapping[str, str] | None = None, endpoint_url: str | None = None,
                 region: str | None = None) -> S3Storage:
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise StorageError("s3:// output needs the s3 extra: pip install 'brokerexport[s3]'") from None
        bucket, _, prefix = url[len("s3://"):].partition("/")
        if not bucket:
            raise StorageError(f"output {url!r}: no bucket (use s3://BUCKET/PREFIX)")
        env = os.environ if env is None else env
        endpoint = endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
        region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        session = boto3.session.Session(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
            region_name=region,
        )
        config = Config(
            retries={"mode": "standard", "max_attempts": 8},
            connect_timeout=10,
            read_timeout=120,
            max_pool_connections=16,
            # S3-compatible servers (MinIO, Ceph, R2) differ on the newer default checksums
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        client = session.client("s3", endpoint_url=endpoint, config=config)
        probe = session.client("s3", endpoint_url=endpoint, config=config.merge(
            Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=30)))
        return cls(client, bucket, prefix, endpoint=endpoint, probe=probe)

    def full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def relative(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    def call(self, operation: str, *, client: Any = None, **kwargs: Any) -> Any:
        """One S3 call (botocore retries transient failures); failures become one clear line."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(client or self.client, operation)(**kwargs)
        except ClientError as exc:
            code = _code(exc)
            if code in _AUTH_CODES:
                raise StorageAuthError(
                    f"{self.url}: S3 refused the credentials or the access ({code}); check AWS_ACCESS_KEY_ID / "
                    "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) and the bucket policy"
                ) from None
            if code == "NoSuchBucket":
                raise StorageError(f"{self.url}: bucket {self.bucket!r} does not exist") from None
            message = exc.response.get("Error", {}).get("Message") or code
            raise StorageError(f"{self.url}: S3 {operation} failed: {message}", code=code) from None
        except BotoCoreError as exc:
            raise StorageError(f"{self.url}: S3 unreachable ({type(exc).__name__}: {exc})") from None

    def reach(self) -> None:
        """A bucket that is missing or out of reach fails here, in one line (few retries)."""
        try:
            self.call("head_bucket", client=self.probe, Bucket=self.bucket)
        except StorageError as exc:
            code = exc.code
            if not code:
                raise
            if code in ("404", "NoSuchBucket"):
                raise StorageError(f"{self.url}: bucket {self.bucket!r} does not exist") from None
            if code in ("403",):
                raise StorageAuthError(f"{self.url}: access to bucket {self.bucket!r} denied; check "
                                       "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy") from None
            raise

    def read(self, key: str) -> bytes | None:
        try:
            return self.call("get_object", Bucket=self.bucket, Key=self.full(key))["Body"].read()
        except StorageError as exc:
            if exc.code in ("NoSuchKey", "404"):
                return None
            raise

    def write_atomic(self, key: str, data: bytes) -> None:
        self.call("put_object", Bucket=self.bucket, Key=self.full(key), Body=data)

    def list(self, prefix: str) -> list[ObjectInfo]:
        found: list[ObjectInfo] = []
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            answer = self.call("list_objects_v2", Bucket=self.bucket, Prefix=self.full(prefix), **extra)
            found += [ObjectInfo(self.relative(o["Key"]), int(o["Size"])) for o in answer.get("Contents", [])]
            if not answer.get("IsTruncated"):
                return sorted(found, key=lambda o: o.key)
            token = answer["NextContinuationToken"]

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            if chunk:
                self.call("delete_objects", Bucket=self.bucket,
                          Delete={"Objects": [{"Key": self.full(k)} for k in chunk], "Quiet": True})

    def remove_staging(self, prefix: str) -> None:
        if not is_staging_key(prefix.rstrip("/")):
            raise UnsafeRemoval(f"refusing to remove {self.describe(prefix)}: it is not strictly inside _staging/")
        folder = prefix.rstrip("/") + "/"
        for key, upload_id in self.pending_uploads(folder):
            self.abort_upload(key, upload_id)
        self.delete([o.key for o in self.list(folder)])

    def open_upload(self, key: str, *, visible: bool = False) -> Upload:
        return S3Upload(self, key, complete=visible)

    def open_read(self, key: str) -> IO[bytes]:
        return io.BufferedReader(S3ReadFile(self, key), buffer_size=1024 * 1024)

    def pending_uploads(self, prefix: str) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        marker: dict[str, str] = {}
        while True:
            answer = self.call("list_multipart_uploads", Bucket=self.bucket, Prefix=self.full(prefix), **marker)
            found += [(self.relative(u["Key"]), u["UploadId"]) for u in answer.get("Uploads", [])]
            if not answer.get("IsTruncated"):
                return found
            marker = {"KeyMarker": answer["NextKeyMarker"], "UploadIdMarker": answer["NextUploadIdMarker"]}

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.call("abort_multipart_upload", Bucket=self.bucket, Key=self.full(key), UploadId=upload_id)
        except StorageError as exc:
            if exc.code not in ("NoSuchUpload", "404"):
                raise

    def prune_uploads(self, prefix: str, keep: list[dict[str, Any]], tag: str) -> None:
        kept = {p.get("upload_id") for p in keep}
        for key, upload_id in self.pending_uploads(prefix.rstrip("/") + "/"):
            if tag in basename(key) and upload_id not in kept:
                self.abort_upload(key, upload_id)

    def complete_upload(self, key: str, state: dict[str, Any]) -> None:
        """Idempotent: an upload completed by an earlier attempt is recognised by its ETag."""
        parts = [{"PartNumber": n, "ETag": e} for n, e in enumerate(state["etags"], start=1)]
        try:
            self.call("complete_multipart_upload", Bucket=self.bucket, Key=self.full(key),
                      UploadId=state["upload_id"], MultipartUpload={"Parts": parts})
        except StorageError as exc:
            if exc.code not in ("NoSuchUpload", "404"):
                raise
            head = self.head(key)
            if head is None or head["etag"] != multipart_etag(state["etags"]):
                raise StorageError(
                    f"{self.describe(key)}: its pending upload is gone and the object is not the one it held "
                    "(a bucket lifecycle rule aborting incomplete uploads?); rerun with --fresh"
                ) from None

    # ---- conditional writes for the lease

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            answer = self.call("head_object", Bucket=self.bucket, Key=self.full(key))
        except StorageError as exc:
            if exc.code in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        date = answer["ResponseMetadata"]["HTTPHeaders"].get("date")
        now: datetime | None = parsedate_to_datetime(date) if date else None
        return {"etag": answer["ETag"], "last_modified": answer["LastModified"], "server_now": now}

    def put_if(self, key: str, data: bytes, *, etag: str | None) -> str | None:
        """Create (``etag`` None: only if absent) or replace (only if still ``etag``); the new ETag,
        or None when the condition failed."""
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            return self.call("put_object", Bucket=self.bucket, Key=self.full(key), Body=data, **condition)["ETag"]
        except StorageError as exc:
            if exc.code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey"):
                return None
            raise
