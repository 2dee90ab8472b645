"""The wire format: one typed model of everything the publisher writes and the client reads.

:mod:`gupper.wire.canonical` holds what every document shares (canonical JSON bytes, timestamps,
names); :mod:`gupper.wire.manifest` the signed manifest (payload, entry, patch, rollout, key
set); :mod:`gupper.wire.files` the one-folder file list and patch index. Each class parses
(``from_json``, validating every field once, so that no later step meets a value of the wrong
type) and serialises (``to_json``) itself; the publisher builds documents through the same
classes the client reads them with.

Unknown fields are kept: a document parsed and serialised again holds every field it had, so a
tool of this version that rewrites a manifest never drops what a newer client understands, and a
client ignores what it does not know (docs/schema-extensions.md). Nothing here is imported by
``import gupper``; the one-folder model is loaded only by one-folder installs.
"""
