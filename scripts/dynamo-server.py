"""A DynamoDB-compatible server for the tests: moto's, with every request serialized.

moto applies a TransactWriteItems item by item and rolls a failed one back from a copy,
so two concurrent transactions can interleave and lose each other's writes (the
contract suite's linearizability check found it). DynamoDB itself serializes the
transactions on an item; one lock around each request gives the tests that guarantee.

usage: python dynamo-server.py HOST PORT   (with the venv that install-dynamo-server.sh made)
"""
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

host, port = sys.argv[1], int(sys.argv[2])
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def serialized(environ, start_response):
    with lock:
        return list(app(environ, start_response))


run_simple(host, port, serialized, threaded=True)
