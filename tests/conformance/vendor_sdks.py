#!/usr/bin/env python3
"""Vendor SDK conformance: the official SDKs against tibridge's loopback simulators.

Runs pytmv1 0.11.0 against the lab Vision One, vt-py 0.22.0 against the lab VirusTotal and
intezer-sdk 1.27.9 against the lab Intezer, so our reading of each wire format is checked by
the vendor's own code (pytmv1 validates every reply with pydantic). Started by
`crates/lab/tests/triage_sims.rs::vendor_sdks_accept_the_simulators`, which seeds:

* Vision One: 60 "Malicious URL" OAT detections (TA0011, high) on ws-01 within the last hour
  plus one TA0002 detection, and workbench alert WB-LAB-1 (critical, highlights c2.example);
* VirusTotal: domain c2.example (12 malicious, 3 suspicious), URL http://c2.example/gate (9/1);
* Intezer: http://c2.example/gate malicious, http://offline.example/ offline.

Environment: LAB_V1_URL, LAB_V1_TOKEN, LAB_VT_URL, LAB_VT_KEY, LAB_INTEZER_URL,
LAB_INTEZER_KEY. Every address must be loopback; the script refuses anything else.
Exit status 0 = every check passed; 1 = a mismatch (each printed); 2 = bad environment.

Set up and run (CI): tests/conformance/vendor/run.sh, which creates the venv from
tests/conformance/vendor/requirements.txt (pytmv1==0.11.0, vt-py==0.22.0, intezer-sdk==1.27.9)
and runs the Rust test with TIBRIDGE_VENDOR_PYTHON pointing at it.
"""

import datetime
import os
import sys
import traceback
from urllib.parse import urlsplit

FAILURES = []


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f"  -- {detail}"))
    if not ok:
        FAILURES.append(what)


def env(name):
    value = os.environ.get(name)
    if not value:
        print(f"missing environment variable {name}", file=sys.stderr)
        sys.exit(2)
    return value


def loopback(name):
    url = env(name).rstrip("/")
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(f"{name}={url} is not a loopback address; refusing to run", file=sys.stderr)
        sys.exit(2)
    return url


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def vision_one(url, token):
    import pytmv1
    from pytmv1 import (
        AlertStatus,
        ObjectRequest,
        ObjectType,
        QueryOp,
        ResultCode,
        RiskLevel,
        ScanAction,
        SuspiciousObjectRequest,
    )

    client = pytmv1.init("tibridge-conformance", token, url)
    now = datetime.datetime.now(datetime.timezone.utc)
    start = iso(now - datetime.timedelta(hours=2))
    end = iso(now + datetime.timedelta(minutes=5))

    # One page, filtered on risk and tactic (the C2 playbook's query).
    res = client.oat.list(
        detected_start_date_time=start,
        detected_end_date_time=end,
        top=50,
        op=QueryOp.AND,
        riskLevel="high",
        filterMitreTacticId="TA0011",
    )
    check("pytmv1 oat.list succeeds", res.result_code == ResultCode.SUCCESS, res.error)
    if res.response is not None:
        check("oat.list page has 50 items", len(res.response.items) == 50, len(res.response.items))
        check("oat.list totalCount is 60", res.response.total_count == 60, res.response.total_count)
        check("oat.list gives a nextLink", bool(res.response.next_link), res.response.next_link)
        first = res.response.items[0]
        tactics = [t for f in first.filters for t in (f.mitre_tactic_ids or [])]
        check("detections carry TA0011", "TA0011" in tactics, tactics)
        objs = [o.value for f in first.filters for o in f.highlighted_objects]
        check("highlighted objects include the C2 URL", "http://c2.example/gate" in objs, objs)

    # Every page through nextLink; pytmv1 re-sends TMV1-Filter itself.
    seen = []
    res = client.oat.consume(
        lambda d: seen.append(d.uuid),
        detected_start_date_time=start,
        detected_end_date_time=end,
        top=50,
        filterMitreTacticId="TA0011",
    )
    check("pytmv1 oat.consume succeeds", res.result_code == ResultCode.SUCCESS, res.error)
    check("oat.consume follows nextLink to all 60", len(set(seen)) == 60, len(set(seen)))

    # Suspicious objects: add (one good, one refused by the server), list, remove.
    res = client.object.add_suspicious(
        SuspiciousObjectRequest(
            object_type=ObjectType.DOMAIN,
            object_value="evil.example.com",
            risk_level=RiskLevel.HIGH,
            scan_action=ScanAction.BLOCK,
            days_to_expiration=30,
        ),
        SuspiciousObjectRequest(
            object_type=ObjectType.URL,
            object_value="http://evil.example.com/payload",
            description="conformance",
            risk_level=RiskLevel.MEDIUM,
            scan_action=ScanAction.LOG,
        ),
    )
    check("pytmv1 add_suspicious succeeds", res.result_code == ResultCode.SUCCESS, res.errors)
    if res.response is not None:
        statuses = [i.status for i in res.response.items]
        check("add_suspicious answers 201 per item", statuses == [201, 201], statuses)
    res = client.object.add_suspicious(
        SuspiciousObjectRequest(object_type=ObjectType.FILE_SHA1, object_value="not-a-sha1")
    )
    check(
        "an invalid SHA-1 is refused per item (400)",
        res.result_code == ResultCode.ERROR and any(e.status == 400 for e in res.errors),
        res,
    )
    res = client.object.list_suspicious()
    check("pytmv1 list_suspicious succeeds", res.result_code == ResultCode.SUCCESS, res.error)
    if res.response is not None:
        values = {(o.type.value, o.value) for o in res.response.items}
        check("listed objects include the domain", ("domain", "evil.example.com") in values, values)
        check("listed objects include the URL", ("url", "http://evil.example.com/payload") in values, values)
    res = client.object.delete_suspicious(
        ObjectRequest(object_type=ObjectType.DOMAIN, object_value="evil.example.com"),
        ObjectRequest(object_type=ObjectType.URL, object_value="http://evil.example.com/payload"),
    )
    check("pytmv1 delete_suspicious succeeds", res.result_code == ResultCode.SUCCESS, res.errors)
    res = client.object.list_suspicious()
    remaining = [o.value for o in res.response.items] if res.response else None
    check("the list is empty after removal", remaining == [], remaining)

    # Exception list: add, list, remove.
    res = client.object.add_exception(
        ObjectRequest(object_type=ObjectType.IP, object_value="198.51.100.1", description="our NAT")
    )
    check("pytmv1 add_exception succeeds", res.result_code == ResultCode.SUCCESS, res.errors)
    res = client.object.list_exception()
    check("pytmv1 list_exception succeeds", res.result_code == ResultCode.SUCCESS, res.error)
    if res.response is not None:
        values = [(o.type.value, o.value) for o in res.response.items]
        check("the exception is listed", values == [("ip", "198.51.100.1")], values)
    res = client.object.delete_exception(ObjectRequest(object_type=ObjectType.IP, object_value="198.51.100.1"))
    check("pytmv1 delete_exception succeeds", res.result_code == ResultCode.SUCCESS, res.errors)

    # Workbench alert: list with a severity filter, get with its ETag, close it.
    res = client.alert.list(start_time=start, end_time=end, severity="critical")
    check("pytmv1 alert.list succeeds", res.result_code == ResultCode.SUCCESS, res.error)
    if res.response is not None:
        ids = [a.id for a in res.response.items]
        check("alert.list returns WB-LAB-1", ids == ["WB-LAB-1"], ids)
        if res.response.items:
            values = [i.value for i in res.response.items[0].indicators]
            check("alert indicators include c2.example", "c2.example" in values, values)
    res = client.alert.list(start_time=start, end_time=end, alertProvider="TI")
    check("pytmv1 alert.list of TI alerts succeeds", res.result_code == ResultCode.SUCCESS, res.error)
    if res.response is not None:
        kinds = [(a.id, type(a).__name__) for a in res.response.items]
        check("the sweep alert parses as a TiAlert", kinds == [("WB-LAB-TI", "TiAlert")], kinds)
    res = client.alert.get("WB-LAB-1")
    check("pytmv1 alert.get succeeds", res.result_code == ResultCode.SUCCESS, res.error)
    if res.response is not None:
        upd = client.alert.update_status("WB-LAB-1", res.response.etag, status=AlertStatus.CLOSED)
        check("pytmv1 alert.update_status with the ETag succeeds", upd.result_code == ResultCode.SUCCESS, upd.error)
        again = client.alert.update_status("WB-LAB-1", res.response.etag, status=AlertStatus.OPEN)
        check(
            "a stale ETag is refused with 412",
            again.result_code == ResultCode.ERROR and again.error is not None and again.error.status == 412,
            again,
        )


def virustotal(url, key):
    import vt

    client = vt.Client(key, host=url)
    try:
        domain = client.get_object("/domains/{}", "c2.example")
        check("vt-py get_object(domain) type/id", (domain.type, domain.id) == ("domain", "c2.example"),
              (domain.type, domain.id))
        stats = domain.last_analysis_stats
        check("domain malicious/suspicious counts", (stats["malicious"], stats["suspicious"]) == (12, 3), stats)
        check("last_analysis_date parsed as a datetime",
              isinstance(domain.last_analysis_date, datetime.datetime), domain.last_analysis_date)

        u = "http://c2.example/gate"
        obj = client.get_object("/urls/{}", vt.url_id(u))
        check("vt-py get_object(url) by vt.url_id", obj.type == "url", obj.type)
        check("URL report id is the SHA-256 form", len(obj.id) == 64, obj.id)
        check("URL malicious count", obj.last_analysis_stats["malicious"] == 9, obj.last_analysis_stats)

        try:
            client.get_object("/domains/{}", "never-seen.example")
            check("unknown domain raises NotFoundError", False, "no error")
        except vt.APIError as e:
            check("unknown domain raises NotFoundError", e.code == "NotFoundError", e.code)

        analysis = client.scan_url("http://fresh.example/")
        check("vt-py scan_url returns an analysis", analysis.type == "analysis", analysis.type)
    finally:
        client.close()


def intezer(url, key):
    from intezer_sdk import api, consts, errors
    from intezer_sdk.analysis import UrlAnalysis

    consts.CHECK_STATUS_INTERVAL = 0
    client = api.IntezerApiClient(api_version="v2-0", api_key=key, base_url=url + "/api/")

    analysis = UrlAnalysis(url="http://c2.example/gate", api=client)
    analysis.send(wait=True)
    result = analysis.result()
    check("intezer-sdk URL analysis finishes", analysis.status == consts.AnalysisStatusCode.FINISHED,
          analysis.status)
    check("URL verdict is malicious", analysis.verdict == "malicious", analysis.verdict)
    check("result carries scanned_url and ip", bool(result.get("scanned_url")) and bool(result.get("ip")), result)
    check("analysis_time parsed", analysis.analysis_time is not None, result.get("analysis_time"))

    again = UrlAnalysis.from_analysis_id(analysis.analysis_id, api=client)
    check("from_analysis_id finds it", again is not None and again.verdict == "malicious", again)

    try:
        UrlAnalysis(url="http://offline.example/", api=client).send(wait=True)
        check("offline URL raises UrlOfflineError", False, "no error")
    except errors.UrlOfflineError:
        check("offline URL raises UrlOfflineError", True)


def main():
    v1_url, v1_token = loopback("LAB_V1_URL"), env("LAB_V1_TOKEN")
    vt_url, vt_key = loopback("LAB_VT_URL"), env("LAB_VT_KEY")
    iz_url, iz_key = loopback("LAB_INTEZER_URL"), env("LAB_INTEZER_KEY")
    for name, run in (
        ("Vision One / pytmv1", lambda: vision_one(v1_url, v1_token)),
        ("VirusTotal / vt-py", lambda: virustotal(vt_url, vt_key)),
        ("Intezer / intezer-sdk", lambda: intezer(iz_url, iz_key)),
    ):
        print(f"== {name}")
        try:
            run()
        except Exception:  # an SDK exception is a conformance failure, reported, not a crash
            traceback.print_exc()
            FAILURES.append(f"{name}: unexpected exception")
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed: {FAILURES}")
        return 1
    print("all vendor SDK checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
