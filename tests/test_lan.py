"""`mirror --lan`: HTTPS with a certificate made once and kept, and an access token that every
request needs (in the query once, then in the cookie it sets); plain `mirror` unchanged."""

import http.client
import ssl
import stat

import pytest

from helpers import fake_camera, launch, open_page, photo
from stylemirror import lan, mirror
from stylemirror.bench import write_y4m


def ask(port, path, method="GET", cookie=None, tls=True, body=None):
    """(status, headers, body) of one request to the mirror on 127.0.0.1:port."""
    if tls:
        unverified = ssl.create_default_context()
        unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=unverified, timeout=30)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers={"Cookie": cookie} if cookie else {})
    answer = conn.getresponse()
    return answer.status, answer.headers, answer.read()


def test_every_route_needs_the_token(lan_mirror):
    port, token = lan_mirror
    for path in ("/", "/index.html", "/mirror.js", "/models/index.json", "/models/arbitrary.safetensors",
                 "/models/ours/manifest.json", "/nothing-here", f"/?token={token[:-1]}", "/?token="):
        assert ask(port, path)[0] == 403, path
    assert ask(port, "/style", "POST", body=b"x")[0] == 403
    assert ask(port, "/", cookie=f"stylemirror_token={token}x")[0] == 403


def test_the_token_once_sets_a_cookie_that_opens_the_rest(lan_mirror):
    port, token = lan_mirror
    status, headers, body = ask(port, f"/?token={token}")
    assert status == 200 and b"style mirror" in body
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Strict" in cookie
    held = cookie.split(";")[0]
    assert ask(port, "/models/index.json", cookie=held)[0] == 200
    assert ask(port, "/mirror.js", cookie=held)[0] == 200


def test_the_certificate_and_token_are_kept_and_private(config, lan_mirror):
    port, token = lan_mirror
    for name in (lan.TOKEN_FILE, lan.CERT_FILE, lan.KEY_FILE):
        assert stat.S_IMODE((config / name).stat().st_mode) == 0o600, name
    cert = (config / lan.CERT_FILE).read_bytes()
    assert lan.certificate({"127.0.0.1"}) == (config / lan.CERT_FILE, config / lan.KEY_FILE)
    assert (config / lan.CERT_FILE).read_bytes() == cert and lan.access_token() == token  # kept
    lan.certificate({"10.1.2.3"})  # another address: a new certificate that names it
    assert lan.covers(config / lan.CERT_FILE, config / lan.KEY_FILE, {"10.1.2.3", "127.0.0.1", "localhost"})


def test_the_printed_url_holds_the_token_and_a_qr_code(config, models, capsys):
    srv = mirror.start([models], host="127.0.0.1", port=0, open_browser=False, lan=True)
    srv.shutdown()
    out = capsys.readouterr().out
    assert f"https://127.0.0.1:{srv.server_address[1]}/?token={lan.access_token()}" in out
    assert "▀" in out or "█" in out  # the QR code


def test_a_host_off_this_machine_needs_the_token_over_http_too(config, models):
    srv = mirror.start([models], host="0.0.0.0", port=0, open_browser=False)
    try:
        port = srv.server_address[1]
        assert ask(port, "/", tls=False)[0] == 403
        assert ask(port, f"/?token={lan.access_token()}", tls=False)[0] == 200
    finally:
        srv.shutdown()


def test_plain_mirror_stays_open_http_on_the_loopback(config, models):
    srv = mirror.start([models], host="127.0.0.1", port=0, open_browser=False)
    try:
        assert ask(srv.server_address[1], "/", tls=False)[0] == 200
        assert not (config / lan.TOKEN_FILE).exists()
    finally:
        srv.shutdown()


def test_a_phone_on_the_https_url_gets_its_camera_and_stylized_frames(playwright, lan_mirror, tmp_path):
    """An emulated phone (viewport, touch, device scale) on https://127.0.0.1 with the token: a
    secure context, so the (fake) camera is granted and the page stylizes it."""
    port, token = lan_mirror
    y4m = tmp_path / "camera.y4m"
    write_y4m(y4m, photo((320, 240)))
    phone = {k: v for k, v in playwright.devices["Pixel 7"].items() if k != "default_browser_type"}
    context = launch(playwright, tmp_path / "profile", fake_camera(y4m), ignore_https_errors=True, **phone)
    try:
        page = open_page(context, f"https://127.0.0.1:{port}/?token={token}&model=ours&size=160x120")
        assert page.evaluate("window.isSecureContext") and page.errors == []
        page.wait_for_function("window.mirror.frames >= 2", timeout=120000)
        assert page.evaluate("[innerWidth, devicePixelRatio, navigator.maxTouchPoints > 0]")[1:] == [2.625, True]
    finally:
        context.close()
