"""Uploads a file with tuspy, the standard tus client, as tests/bulk.rs
drives it: one line on stdout per piece uploaded, so the test can kill it
mid-upload; run again with the same store, it resumes where the server
says the upload stands.

    upload.py URL FILE STORE CALLER CHUNK [TRANSFER]
"""
import sys

from tusclient import client
from tusclient.storage import filestorage

url, path, store, caller, chunk = sys.argv[1:6]
transfer = sys.argv[6] if len(sys.argv) > 6 else None
tus = client.TusClient(url, headers={"X-Rs-From": caller})
uploader = tus.uploader(
    path,
    chunk_size=int(chunk),
    metadata={"transfer": transfer} if transfer else {},
    store_url=True,
    url_storage=filestorage.FileStorage(store),
    upload_checksum=True,
    retries=0,
)
size = uploader.get_file_size()
print("start", uploader.offset, flush=True)
if not uploader.url:
    uploader.set_url(uploader.create_url())
print("url", uploader.url, flush=True)
while uploader.offset < size:
    uploader.upload_chunk()
    print("offset", uploader.offset, flush=True)
print("done", uploader.offset, flush=True)
