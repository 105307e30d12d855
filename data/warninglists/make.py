#!/usr/bin/env python3
"""Rebuilds data/warninglists/ from the pymispwarninglists 1.7.0 wheel (data CC0).

    pip download pymispwarninglists==1.7.0 --no-deps -d /tmp/wl
    cd /tmp/wl && unzip -q pymispwarninglists-1.7.0-py3-none-any.whl
    python3 data/warninglists/make.py /tmp/wl/pymispwarninglists/data/misp-warninglists/lists

See README.md for what each list is and what was cut.
"""
import ipaddress
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent

WHOLE = [
    "rfc1918", "rfc5735", "rfc6598", "rfc3849", "ipv6-linklocal", "multicast",
    "public-dns-v6", "tranco10k", "rfc6761", "empty-hashes", "common-contact-emails",
]

# public-dns-v4 holds 62,745 resolvers; only those in the networks of the large public
# resolver operators are kept (Google, Cloudflare, Quad9, OpenDNS, AdGuard, CleanBrowsing,
# Level3, Yandex, ControlD, Verisign, Neustar/UltraDNS, Comodo, SafeDNS, DNS.Watch,
# NextDNS, DNS0.eu, Quad101... see OPERATORS).
OPERATORS = [
    "8.8.8.0/24", "8.8.4.0/24", "1.1.1.0/24", "1.0.0.0/24", "9.9.9.0/24", "149.112.112.0/24",
    "208.67.222.0/24", "208.67.220.0/24", "94.140.14.0/24", "94.140.15.0/24",
    "185.228.168.0/24", "185.228.169.0/24", "4.2.2.0/24", "77.88.8.0/24", "76.76.2.0/24",
    "76.76.10.0/24", "64.6.64.0/24", "64.6.65.0/24", "156.154.70.0/24", "156.154.71.0/24",
    "8.26.56.0/24", "8.20.247.0/24", "195.46.39.0/24", "84.200.69.0/24", "84.200.70.0/24",
    "209.244.0.0/24", "45.90.28.0/24", "45.90.30.0/24", "193.110.81.0/24",
    "185.222.222.0/24", "185.184.222.0/24", "91.239.100.0/24", "89.233.43.0/24",
    "80.80.80.0/24", "80.80.81.0/24", "74.82.42.0/24", "216.146.35.0/24", "216.146.36.0/24",
    "37.235.1.0/24", "23.253.163.0/24", "198.101.242.0/24",
]

# Written for tibridge (not in the wheel): IPv6 special-purpose ranges from the IANA IPv6
# Special-Purpose Address Registry and RFC 4193 / 4291 / 6052 / 6666.
IPV6_SPECIAL = {
    "name": "tibridge: IPv6 special-purpose, unique-local and multicast ranges",
    "version": 1,
    "description": "IPv6 addresses that are never a remote attacker: unspecified, loopback, IPv4-mapped, NAT64, discard-only, documentation, unique local (fc00::/7), link-local and multicast (IANA IPv6 Special-Purpose Address Registry; RFC 4193, 4291, 6052, 6666).",
    "type": "cidr",
    "matching_attributes": ["ip-src", "ip-dst", "domain|ip", "ip-src|port", "ip-dst|port"],
    "list": ["::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "100::/64", "2001:db8::/32",
             "fc00::/7", "fe80::/10", "ff00::/8"],
}


def write(name, data):
    folder = HERE / name
    folder.mkdir(exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (folder / "list.json").write_text(text)
    print(f"{name}: {len(data['list'])} entries, {len(text)} bytes")


def main(source):
    source = pathlib.Path(source)
    for name in WHOLE:
        write(name, json.loads((source / name / "list.json").read_text()))
    dns = json.loads((source / "public-dns-v4" / "list.json").read_text())
    nets = [ipaddress.ip_network(n) for n in OPERATORS]
    total = len(dns["list"])
    dns["list"] = [e for e in dns["list"] if any(ipaddress.ip_network(e, strict=False).subnet_of(n) for n in nets)]
    print(f"public-dns-v4: kept {len(dns['list'])} of {total}")
    write("public-dns-v4", dns)
    write("tibridge-ipv6-special", IPV6_SPECIAL)


if __name__ == "__main__":
    main(sys.argv[1])
