"""A person at a browser, for the login tests: opens URL, signs in to oidc-provider's development
pages (any login, any password), approves what is asked, and follows every redirect, the last
one to the daemon's loopback callback for an authorization code login. Cookies are kept as a
browser keeps them.

    python user.py URL [--login NAME] [--wrong-state] [--abort] [--stop-at-callback]

--wrong-state first delivers the callback redirect with its state altered and prints that
answer's status as "wrong-state STATUS", then delivers the real one. --abort refuses instead of
approving. --stop-at-callback prints "callback URL" instead of following the redirect to the
daemon (another user, who approved as themselves, delivers it). Prints "final STATUS
URL-WITHOUT-QUERY" at the end; exits 1 if a page is not one these pages would show.
"""

import argparse
import sys
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx


class Forms(HTMLParser):
    """The page's forms: action, method and named inputs (buttons included, with their role)."""

    def __init__(self):
        super().__init__()
        self.forms = []
        self.loose = []  # submit buttons outside their form (form="id")
        self.links = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "form":
            self.forms.append({"id": a.get("id"), "action": a.get("action", ""), "fields": []})
        elif tag in ("input", "button") and a.get("name"):
            field = (a["name"], a.get("value", ""), a.get("type", "text"))
            if a.get("form"):
                self.loose.append((a["form"], field))
            elif self.forms:
                self.forms[-1]["fields"].append(field)


def submit(client, page_url, html, login, abort):
    parser = Forms()
    parser.feed(html)
    if not parser.forms:
        return None
    aborts = [link for link in parser.links if link.rstrip("/").endswith("/abort")]
    if abort and aborts:
        return client.get(urljoin(page_url, aborts[0]))
    form = parser.forms[0]
    data = {}
    for name, value, kind in form["fields"] + [f for owner, f in parser.loose if owner == form["id"]]:
        if name == "abort" and not abort:
            continue
        if name == "confirm" and abort:
            continue
        if kind in ("text", "email") and name == "login":
            value = login
        elif kind == "password":
            value = "any-password"
        data[name] = value
    return client.post(urljoin(page_url, form["action"]), data=data)


def main():
    args = argparse.ArgumentParser()
    args.add_argument("url")
    args.add_argument("--login", default="alice")
    args.add_argument("--wrong-state", action="store_true")
    args.add_argument("--abort", action="store_true")
    args.add_argument("--stop-at-callback", action="store_true")
    opts = args.parse_args()
    issuer = urlsplit(opts.url).netloc
    with httpx.Client(follow_redirects=False, timeout=20, trust_env=False) as client:
        response = client.get(opts.url)
        for _ in range(30):
            if response.is_redirect:
                target = urljoin(str(response.url), response.headers["location"])
                if urlsplit(target).netloc != issuer and opts.stop_at_callback:
                    print("callback", target, flush=True)
                    return
                if urlsplit(target).netloc != issuer and opts.wrong_state:
                    parts = urlsplit(target)
                    query = [(k, "x" + v if k == "state" else v) for k, v in parse_qsl(parts.query)]
                    wrong = client.get(urlunsplit(parts._replace(query=urlencode(query))))
                    print("wrong-state", wrong.status_code, flush=True)
                response = client.get(target)
                continue
            if urlsplit(str(response.url)).netloc != issuer:
                break
            submitted = submit(client, str(response.url), response.text, opts.login, opts.abort)
            if submitted is None:
                break
            response = submitted
        parts = urlsplit(str(response.url))
        print("final", response.status_code, urlunsplit(parts._replace(query="")), flush=True)
        if response.status_code >= 400 and not opts.abort:
            print(response.text[:2000], file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
