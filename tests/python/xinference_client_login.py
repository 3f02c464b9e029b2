"""The official `xinference-client` logs in as a user (POST /token) and lists models.

argv: base URL, user name, password. Prints the number of models, then "ok"; for a refused
login, "refused: " and the client's error.
"""
import sys

from xinference_client import RESTfulClient

base, username, password = sys.argv[1:4]
client = RESTfulClient(base)
assert client._cluster_authed
try:
    client.login(username, password)
except RuntimeError as e:
    print(f"refused: {e}")
    sys.exit(0)
print(len(client.list_models()))
print("ok")
