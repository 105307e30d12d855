#!/usr/bin/env python3
"""PyMISP against the tibridge lab MISP: does the official client read our simulator the way
it reads a real MISP?

Starts nothing itself. The lab MISP must be running with crates/lab/testdata/misp_events.json
loaded; the counts below come from that file (see crates/lab/testdata/README.md).

    LAB_MISP_URL=http://127.0.0.1:PORT LAB_MISP_KEY=... python pymisp_lab.py

Run by crates/lab/tests/pymisp_conformance.rs when TIBRIDGE_PYTHON_VERIFY points to a venv
python with pymisp==2.5.34.4 (`python3 -m venv /tmp/tibridge-verify &&
/tmp/tibridge-verify/bin/pip install "pymisp==2.5.34.4"`). Exits non-zero on any mismatch.
Only ever talks to the URL given, which must be loopback.
"""

import json
import os
import sys
import urllib.parse

import requests
from pymisp import MISPAttribute, MISPEvent, PyMISP

FAILURES = []


def check(what, got, expected):
    if got != expected:
        FAILURES.append(f"{what}: expected {expected!r}, got {got!r}")
        print(f"FAIL {what}: expected {expected!r}, got {got!r}")
    else:
        print(f"ok   {what}")


def main():
    url = os.environ.get("LAB_MISP_URL", "").rstrip("/")
    key = os.environ.get("LAB_MISP_KEY", "")
    host = urllib.parse.urlparse(url).hostname
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(f"refusing to run against a non-loopback URL: {url!r}")
        return 2

    misp = PyMISP(url, key, ssl=False)  # the constructor needs getVersion, users/view/me, describeTypes
    check("describeTypes reached PyMISP", "sha1" in misp.types and "Payload delivery" in misp.categories, True)

    # The incremental-pull query tibridge makes, through PyMISP's own body builder.
    pages = []
    for page in (1, 2, 3):
        result = misp.search(
            controller="attributes",
            type_attribute=["sha1", "domain"],
            to_ids=1,
            tags=misp.build_complex_query(not_parameters=["tlp:red"]),
            deleted=[0, 1],
            include_event_tags=True,
            order="Attribute.id asc",
            limit=2,
            page=page,
            pythonify=True,
        )
        if isinstance(result, dict):
            FAILURES.append(f"search page {page} returned an error: {result}")
            break
        pages.append(result)
    check("page sizes", [len(p) for p in pages], [2, 1, 0])
    attrs = [a for p in pages for a in p]
    check("all are MISPAttribute", all(isinstance(a, MISPAttribute) for a in attrs), True)
    check("attribute ids", [int(a.id) for a in attrs], [1, 2, 4])
    check("values", [a.value for a in attrs],
          ["3395856ce81f2b7382dee72602f798b642f14140", "evil.example", "da39a3ee5e6b4b0d3255bfef95601890afd80709"])
    check("deleted flags", [bool(a.deleted) for a in attrs], [False, False, True])
    check("to_ids flags", [bool(a.to_ids) for a in attrs], [True, True, True])
    check("inherited event tag", [sorted(t.name for t in a.tags) for a in attrs], [["tlp:green"]] * 3)
    check("event uuid carried", {a.Event.uuid for a in attrs} if attrs and hasattr(attrs[0], "Event") else None,
          {"a0a0a0a0-0000-4000-8000-000000000001"})

    # Same query without the deleted flag: soft-deleted attributes disappear.
    live = misp.search(controller="attributes", type_attribute=["sha1", "domain"], to_ids=1,
                       tags=misp.build_complex_query(not_parameters=["tlp:red"]), pythonify=True)
    check("live only by default", sorted(int(a.id) for a in live), [1, 2])

    # Published filter and events controller.
    events = misp.search(controller="events", published=True, pythonify=True)
    check("published events", sorted(e.uuid for e in events),
          ["a0a0a0a0-0000-4000-8000-000000000001", "b0b0b0b0-0000-4000-8000-000000000002"])

    # Sightings as tibridge sends them.
    sighting = misp.add_sighting({"values": ["evil.example"], "source": "tibridge", "type": "0", "timestamp": 1705312800})
    check("sighting accepted", isinstance(sighting, dict) and "Sighting" in sighting, True)
    if isinstance(sighting, dict) and "Sighting" in sighting:
        check("sighting attribute", sighting["Sighting"].get("attribute_uuid"), "a1000000-0000-4000-8000-000000000002")
    by_id = misp.add_sighting({"source": "tibridge"}, attribute="a1000000-0000-4000-8000-000000000001")
    check("sighting by uuid accepted", isinstance(by_id, dict) and "Sighting" in by_id, True)

    # The feed, read the way PyMISP's feed tooling reads a MISP feed.
    manifest = requests.get(f"{url}/feed/manifest.json", timeout=10).json()
    check("manifest events", sorted(manifest), ["a0a0a0a0-0000-4000-8000-000000000001", "b0b0b0b0-0000-4000-8000-000000000002"])
    check("manifest numbers are ints",
          all(isinstance(m["timestamp"], int) and isinstance(m["threat_level_id"], int) and isinstance(m["analysis"], int)
              for m in manifest.values()), True)
    hashes = requests.get(f"{url}/feed/hashes.csv", timeout=10).text.splitlines()
    counts = {}
    for uuid in sorted(manifest):
        raw = requests.get(f"{url}/feed/{uuid}.json", timeout=10).json()
        event = MISPEvent()
        event.load(raw)
        counts[uuid] = len(event.attributes)
        feed = event.to_feed(with_meta=True)
        meta = feed["Event"]["_manifest"][uuid]
        check(f"{uuid} manifest entry as PyMISP computes it",
              {k: meta[k] for k in ("info", "date", "timestamp", "threat_level_id", "analysis")},
              {k: manifest[uuid][k] for k in ("info", "date", "timestamp", "threat_level_id", "analysis")})
        ours = sorted(line.split(",")[0] for line in hashes if line.endswith("," + uuid))
        check(f"{uuid} hashes.csv as PyMISP computes it", ours, sorted(feed["Event"]["_hashes"]))
    # PyMISP's feed generator (examples/feed-generator/generate.py, 2.5): index the published
    # events, fetch each, `to_feed(with_meta=True)`. Its output must be what the lab's feed serves.
    index = misp.search_index(published=True)
    check("index of published events", sorted(e["uuid"] for e in index), sorted(manifest))
    for entry in index:
        uuid = entry["uuid"]
        event = misp.get_event(uuid, pythonify=True)
        generated = event.to_feed(with_meta=True)["Event"]
        served = requests.get(f"{url}/feed/{uuid}.json", timeout=10).json()["Event"]
        check(f"{uuid} generator and feed agree on attributes",
              sorted((a["uuid"], a["type"], a["value"], a["to_ids"]) for a in generated["Attribute"]),
              sorted((a["uuid"], a["type"], a["value"], a["to_ids"]) for a in served["Attribute"]))
        check(f"{uuid} generator and feed agree on tags",
              sorted(t["name"] for t in generated.get("Tag", [])), sorted(t["name"] for t in served.get("Tag", [])))
        gen_meta = generated["_manifest"][uuid]
        check(f"{uuid} generator manifest entry matches the lab's",
              {k: gen_meta[k] for k in ("info", "date", "timestamp", "threat_level_id", "analysis")},
              {k: manifest[uuid][k] for k in ("info", "date", "timestamp", "threat_level_id", "analysis")})
        ours = sorted(line.split(",")[0] for line in hashes if line.endswith("," + uuid))
        check(f"{uuid} generator hashes match hashes.csv", sorted(generated["_hashes"]), ours)

    check("feed attribute counts", counts,
          {"a0a0a0a0-0000-4000-8000-000000000001": 5, "b0b0b0b0-0000-4000-8000-000000000002": 2})

    # A wrong key is refused the way PyMISP expects (403 JSON → {"errors": ...}).
    bad = requests.post(f"{url}/attributes/restSearch", headers={"Authorization": "wrong", "Accept": "application/json"},
                        data=json.dumps({"returnFormat": "json"}), timeout=10)
    check("wrong key status", bad.status_code, 403)

    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    print("all PyMISP checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
