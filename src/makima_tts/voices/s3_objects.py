"""`S3Objects`: the object store in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, ...) through boto3.

Credentials, region and endpoint come from the standard AWS chain (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_S3`,
profiles, instance roles), or `TTS_S3_ENDPOINT_URL` / `TTS_S3_REGION` on top. A PUT is atomic in S3 (a
reader sees the old object or the new one); `create` is a PUT with `If-None-Match: *`, which AWS S3, MinIO
and Ceph answer with 412 when the key exists (`probe_conditional_create` checks the server does).
Timeouts are short and retries few: an unreachable store must turn into a clear 503 quickly.
"""

from __future__ import annotations

import time

from .errors import VoiceStoreUnavailable

MISSING = {"NoSuchKey", "404", "NotFound"}
TAKEN = {"PreconditionFailed", "412"}
CONFLICT = {"ConditionalRequestConflict", "409"}  # a concurrent conditional write: try again


class S3Objects:
    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, addressing_style: str = "auto", timeout_s: float = 5.0):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.where = f"s3://{bucket}/{self.prefix}"
        config = Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                        retries={"max_attempts": 2, "mode": "standard"},
                        s3={"addressing_style": addressing_style})
        self.client = boto3.session.Session().client("s3", endpoint_url=endpoint_url or None,
                                                     region_name=region or None, config=config)

    def _unavailable(self, exc: Exception, key: str) -> VoiceStoreUnavailable:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            cause = f"{err.get('Code', '?')}: {err.get('Message') or 'no message'}"
        else:
            cause = str(exc) or type(exc).__name__
        return VoiceStoreUnavailable(f"voice store {self.where} cannot be used ({key}): {cause}")

    @staticmethod
    def _code(exc: Exception) -> str | None:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return None
        return str(exc.response.get("Error", {}).get("Code", ""))

    def read(self, key: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except ClientError as exc:
            if self._code(exc) in MISSING:
                return None
            raise self._unavailable(exc, key) from None
        except BotoCoreError as exc:
            raise self._unavailable(exc, key) from None

    def write(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc, key) from None

    def create(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(3):
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, IfNoneMatch="*")
                return True
            except ClientError as exc:
                code = self._code(exc)
                if code in TAKEN:
                    return False
                if code in CONFLICT and attempt < 2:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise self._unavailable(exc, key) from None
            except BotoCoreError as exc:
                raise self._unavailable(exc, key) from None
        return False

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except ClientError as exc:
            if self._code(exc) not in MISSING:
                raise self._unavailable(exc, key) from None
        except BotoCoreError as exc:
            raise self._unavailable(exc, key) from None

    def keys(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        found = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=self.prefix + prefix)
            for page in pages:
                found.extend(obj["Key"][len(self.prefix):] for obj in page.get("Contents", []))
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc, prefix) from None
        return sorted(found)
