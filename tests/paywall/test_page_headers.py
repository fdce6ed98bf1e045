"""The browser 402's Content-Security-Policy and X-Frame-Options, for each kind of site.

``farthing.paywall.edge.page.page_headers`` is called with the headers a site's
answer carried; these tests read what it returns. The browser tests
(test_pay_page.py) show Chromium refusing to frame the page.
"""

from __future__ import annotations

from farthing.paywall.edge.page import STRICT_CSP, page_headers


def _values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [value.decode() for key, value in headers if key == name]


def test_a_site_without_a_policy_gets_the_strict_one_and_is_never_framed() -> None:
    headers = page_headers([(b"content-type", b"text/html")])
    assert _values(headers, b"content-security-policy") == [STRICT_CSP]
    assert "frame-ancestors 'none'" in STRICT_CSP
    assert _values(headers, b"x-frame-options") == ["DENY"]


def test_a_sites_policy_without_frame_ancestors_gets_a_second_policy_that_forbids_framing() -> None:
    site = "default-src 'self'; script-src 'self'"
    headers = page_headers([(b"Content-Security-Policy", site.encode())])
    assert _values(headers, b"content-security-policy") == [site, "frame-ancestors 'none'"]
    assert _values(headers, b"x-frame-options") == ["DENY"]


def test_a_site_that_lets_itself_frame_the_page_still_can() -> None:
    site = "default-src 'self'"
    headers = page_headers(
        [(b"content-security-policy", site.encode()), (b"x-frame-options", b"SAMEORIGIN")]
    )
    assert _values(headers, b"content-security-policy") == [site, "frame-ancestors 'self'"]
    assert _values(headers, b"x-frame-options") == ["SAMEORIGIN"]


def test_a_sites_own_frame_ancestors_and_every_one_of_its_policies_are_kept() -> None:
    first, second = "default-src 'self'", "frame-ancestors https://partner.example"
    headers = page_headers(
        [
            (b"content-security-policy", first.encode()),
            (b"content-security-policy", second.encode()),
        ]
    )
    assert _values(headers, b"content-security-policy") == [first, second]
    assert _values(headers, b"x-frame-options") == ["DENY"]
