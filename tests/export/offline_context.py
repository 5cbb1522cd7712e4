"""Serves the RO-Crate 1.1 JSON-LD context from a vendored copy, so rocrate-validator
works on a machine without network access.

rocrate-validator resolves the crate's `@context` (https://w3id.org/ro/crate/1.1/context)
over HTTP, through `requests` (its own HTTP cache and its JSON-LD document loader for
rdflib). `install()` answers exactly that URL from ro-crate-1.1-context.jsonld, the file
published by ResearchObject/ro-crate (docs/_specification/1.1/context.jsonld at commit
4b4f939c18022550ae0b992b7ddfb2cb5b2e8608, CC0); any other request goes to the network as
usual (and fails offline, which the validator reports). Nothing else is changed.
"""
import io
import pathlib

import requests.adapters
import urllib3

CONTEXT_URL = "https://w3id.org/ro/crate/1.1/context"
CONTEXT_FILE = pathlib.Path(__file__).with_name("ro-crate-1.1-context.jsonld")


def install():
    body = CONTEXT_FILE.read_bytes()
    original = requests.adapters.HTTPAdapter.send

    def send(self, request, *args, **kwargs):
        if request.url.rstrip("/") == CONTEXT_URL:
            raw = urllib3.HTTPResponse(
                body=io.BytesIO(body),
                headers={"Content-Type": "application/ld+json"},
                status=200,
                preload_content=False,
                request_url=request.url,
            )
            return self.build_response(request, raw)
        return original(self, request, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = send
