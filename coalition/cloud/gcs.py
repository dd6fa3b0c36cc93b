"""A minimal Google Cloud Storage client (JSON API) for `coalition cloud setup gcloud`.

Four calls (bucket exists/create, object md5, upload) do not justify another optional
dependency: this speaks the JSON API through an injected requests-style session, which is an
AuthorizedSession in production and a plain one against the local fake in tests.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import quote

from coalition.cloud.base import CloudError, Throttled

STORAGE_URL = "https://storage.googleapis.com"


class GcsBucket:
    """One bucket of a project."""

    def __init__(self, session: Any, bucket: str, project: str, base_url: str = STORAGE_URL):
        self.session = session
        self.bucket = bucket
        self.project = project
        self.base = base_url.rstrip("/")

    def _check(self, response: Any, action: str) -> Any:
        if response.status_code in (429, 503):
            raise Throttled(f"{action}: HTTP {response.status_code}")
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise CloudError(f"{action}: HTTP {response.status_code}: {message}")
        return response

    def exists(self) -> bool:
        """Does the bucket exist (and can we see it)?"""
        r = self.session.get(f"{self.base}/storage/v1/b/{quote(self.bucket, safe='')}")
        if r.status_code == 404:
            return False
        self._check(r, f"bucket {self.bucket}")
        return True

    def create(self, location: str, kms_key: str = "") -> None:
        """Create the bucket: uniform access (no per-object ACLs), public access prevented,
        and `kms_key` as its default encryption key when given."""
        body: dict[str, Any] = {
            "name": self.bucket,
            "location": location,
            "iamConfiguration": {
                "uniformBucketLevelAccess": {"enabled": True},
                "publicAccessPrevention": "enforced",
            },
        }
        if kms_key:
            body["encryption"] = {"defaultKmsKeyName": kms_key}
        r = self.session.post(f"{self.base}/storage/v1/b", params={"project": self.project}, json=body)
        self._check(r, f"create bucket {self.bucket}")

    def metadata(self) -> dict[str, Any]:
        """The bucket's resource (iamConfiguration, encryption, ...)."""
        r = self.session.get(f"{self.base}/storage/v1/b/{quote(self.bucket, safe='')}")
        return self._check(r, f"bucket {self.bucket}").json()

    def patch(self, body: dict[str, Any]) -> None:
        """Change some of the bucket's fields."""
        r = self.session.patch(f"{self.base}/storage/v1/b/{quote(self.bucket, safe='')}", json=body)
        self._check(r, f"update bucket {self.bucket}")

    def iam_policy(self) -> dict[str, Any]:
        """The bucket's IAM policy (bindings of roles to members)."""
        r = self.session.get(f"{self.base}/storage/v1/b/{quote(self.bucket, safe='')}/iam")
        return self._check(r, f"IAM policy of {self.bucket}").json()

    def set_iam_policy(self, policy: dict[str, Any]) -> None:
        """Replace the bucket's IAM policy (send back the etag read: a concurrent change fails)."""
        r = self.session.put(f"{self.base}/storage/v1/b/{quote(self.bucket, safe='')}/iam", json=policy)
        self._check(r, f"set the IAM policy of {self.bucket}")

    def md5(self, name: str) -> str | None:
        """The hex md5 of object `name`, or None when it does not exist."""
        r = self.session.get(
            f"{self.base}/storage/v1/b/{quote(self.bucket, safe='')}/o/{quote(name, safe='')}"
        )
        if r.status_code == 404:
            return None
        meta = self._check(r, f"object {name}").json()
        return base64.b64decode(meta.get("md5Hash", "")).hex()

    def upload(self, name: str, data: bytes) -> None:
        """Write object `name` (one request: bundles are tens of MB at most)."""
        r = self.session.post(
            f"{self.base}/upload/storage/v1/b/{quote(self.bucket, safe='')}/o",
            params={"uploadType": "media", "name": name},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        self._check(r, f"upload {name}")


def md5_hex(data: bytes) -> str:
    """The hex md5 of `data`, as GCS and single-part S3 ETags report it."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
