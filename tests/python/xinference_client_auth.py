"""The official `xinference-client` against a server with auth on.

argv: base URL, MiniLM folder, an admin API key, a models:list-only API key.
"""
import sys

from xinference_client import RESTfulClient

base, minilm, admin_key, lister_key = sys.argv[1:5]


def refused(call, status):
    try:
        call()
    except RuntimeError as e:
        assert status in str(e), e
        return str(e)
    raise AssertionError("the call was not refused")


# No credential: the client sees auth on and every call fails.
anonymous = RESTfulClient(base)
assert anonymous._cluster_authed
print(refused(anonymous.list_models, "Not authenticated"))

# An admin key: launch, list, embed.
admin = RESTfulClient(base, api_key=admin_key)
uid = admin.launch_model(
    model_name="all-MiniLM-L6-v2", model_type="embedding", model_uid="mini", model_path=minilm
)
assert uid == "mini"
assert list(admin.list_models()) == ["mini"]
r = admin.get_model("mini").create_embedding("hello")
assert len(r["data"][0]["embedding"]) == 384

# login(user, password): a JWT from POST /token.
reader = RESTfulClient(base)
refused(lambda: reader.login("reader", "wrong"), "Incorrect username or password")
reader.login("reader", "reader-pw")
r = reader.get_model("mini").create_embedding(["a", "b"])
assert len(r["data"]) == 2
print(refused(lambda: reader.terminate_model("mini"), "lacks the scope models:write"))

# A key limited to models:list may list but not infer.
lister = RESTfulClient(base, api_key=lister_key)
assert list(lister.list_models()) == ["mini"]
print(refused(lambda: lister.get_model("mini").create_embedding("x"), "lacks the scope models:read"))

admin.terminate_model("mini")
print("ok")
