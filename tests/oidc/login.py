"""Sign in at the test's OpenID provider as a browser would, without a browser.

  login.py token ISSUER USER [REDIRECT_URI]   print an ID token (authorization code + PKCE)
  login.py sso SERVER USER                    sign in through ONYX's /oauth2/redirect and
                                              print what /api/v1/userinfo then says

The provider's development sign-in takes any account name and password.
"""
import base64
import hashlib
import json
import os
import re
import sys
import urllib.parse

import requests


def follow(session, url, user, stop_prefix):
    """Follow redirects and fill the provider's sign-in form until a URL starts with
    stop_prefix; return that URL (not fetched)."""
    for _ in range(20):
        if url.startswith(stop_prefix):
            return url
        r = session.get(url, allow_redirects=False)
        if r.status_code in (301, 302, 303, 307, 308):
            url = urllib.parse.urljoin(url, r.headers["location"])
            continue
        if r.status_code == 200 and "<form" in r.text:
            action = re.search(r'action="([^"]+)"', r.text).group(1)
            form = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', r.text))
            if 'name="login"' in r.text:
                form.update(login=user, password="any")
            r = session.post(urllib.parse.urljoin(url, action), data=form, allow_redirects=False)
            url = urllib.parse.urljoin(url, r.headers["location"])
            continue
        raise SystemExit(f"sign-in stopped at {url}: {r.status_code} {r.text[:300]}")
    raise SystemExit("sign-in: too many redirects")


def token(issuer, user, redirect_uri="http://127.0.0.1/cb"):
    s = requests.Session()
    verifier = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urllib.parse.urlencode(dict(
        client_id="onyx", response_type="code", scope="openid email groups",
        redirect_uri=redirect_uri, code_challenge=challenge, code_challenge_method="S256",
        state="test"))
    back = follow(s, f"{issuer}/auth?{query}", user, redirect_uri)
    code = urllib.parse.parse_qs(urllib.parse.urlparse(back).query)["code"][0]
    t = requests.post(f"{issuer}/token", auth=("onyx", "onyx-secret"), data=dict(
        grant_type="authorization_code", code=code, redirect_uri=redirect_uri,
        code_verifier=verifier))
    t.raise_for_status()
    return t.json()["id_token"]


def sso(server, user):
    s = requests.Session()
    # Through the server's sign-in: it redirects to the provider, which sends the browser
    # back to /oauth2/callback, which sets the cookie and redirects home.
    back = follow(s, f"{server}/oauth2/redirect?redirect=/workflows", user, f"{server}/oauth2/callback")
    r = s.get(back, allow_redirects=False)
    if r.status_code not in (302, 303) or r.headers.get("location") != "/workflows":
        raise SystemExit(f"callback answered {r.status_code} {r.headers} {r.text[:300]}")
    info = s.get(f"{server}/api/v1/userinfo")
    info.raise_for_status()
    return json.dumps({"userinfo": info.json(), "cookie": "authorization" in s.cookies.keys()})


if __name__ == "__main__":
    if sys.argv[1] == "token":
        print(token(*sys.argv[2:]))
    elif sys.argv[1] == "sso":
        print(sso(sys.argv[2], sys.argv[3]))
    else:
        raise SystemExit(__doc__)
