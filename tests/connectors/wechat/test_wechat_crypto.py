"""Signatures and the AES envelope, checked against FIPS-197 and the openssl CLI."""
from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess

import pytest

from connectors.wechat.crypto import (
    InvalidAppIdError,
    InvalidSignatureError,
    MessageCrypto,
    WeChatCryptoError,
    _cbc_pure,
    _PureAES,
    check_signature,
    compute_signature,
    pkcs7_pad,
    pkcs7_unpad,
)
from connectors.wechat.messages import parse_xml

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def test_signature_sorts_parts_like_wechat():
    import hashlib

    expected = hashlib.sha1("".join(sorted(["tok", "1700000000", "nonce1"])).encode()).hexdigest()
    assert compute_signature("tok", "1700000000", "nonce1") == expected
    assert check_signature(expected, "nonce1", "tok", "1700000000")
    assert not check_signature(expected[:-1] + "0", "tok", "1700000000", "nonce1")
    assert not check_signature(None, "tok", "1", "n")


def test_pure_aes_matches_fips197_vectors():
    plain = bytes.fromhex("00112233445566778899aabbccddeeff")
    aes256 = _PureAES(bytes(range(32)))
    assert aes256.encrypt_block(plain).hex() == "8ea2b7ca516745bfeafc49904b496089"
    assert aes256.decrypt_block(bytes.fromhex("8ea2b7ca516745bfeafc49904b496089")) == plain
    assert _PureAES(bytes(range(16))).encrypt_block(plain).hex() == "69c4e0d86a7b0430d8cdb78070b4c55a"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_pure_cbc_matches_openssl():
    key, iv, data = os.urandom(32), os.urandom(16), os.urandom(96)
    encrypt, decrypt = _cbc_pure(key)
    reference = subprocess.run(
        ["openssl", "enc", "-aes-256-cbc", "-K", key.hex(), "-iv", iv.hex(), "-nopad"],
        input=data, capture_output=True, check=True,
    ).stdout
    assert encrypt(iv, data) == reference
    assert decrypt(iv, reference) == data


def test_pkcs7_pads_to_32_bytes():
    assert len(pkcs7_pad(b"x" * 5)) == 32
    assert pkcs7_pad(b"x" * 32)[-1] == 32 and len(pkcs7_pad(b"x" * 32)) == 64
    assert pkcs7_unpad(pkcs7_pad(b"hello")) == b"hello"
    with pytest.raises(WeChatCryptoError):
        pkcs7_unpad(b"abc" + bytes([40]))


def test_envelope_layout_is_random_length_message_appid():
    crypto = MessageCrypto("tok", AES_KEY, "wxapp", prefer_native=False)
    encrypted = crypto.encrypt("<xml>你好</xml>", random_prefix=b"R" * 16)
    key = base64.b64decode(AES_KEY + "=")
    _, decrypt = _cbc_pure(key)
    plain = pkcs7_unpad(decrypt(key[:16], base64.b64decode(encrypted)))
    msg = "<xml>你好</xml>".encode()
    assert plain[:16] == b"R" * 16
    assert struct.unpack(">I", plain[16:20])[0] == len(msg)
    assert plain[20:20 + len(msg)] == msg and plain[20 + len(msg):] == b"wxapp"
    assert crypto.decrypt(encrypted) == "<xml>你好</xml>"


def test_decrypt_message_checks_signature_and_app_id():
    crypto = MessageCrypto("tok", AES_KEY, "wxapp")
    encrypted = crypto.encrypt("<xml/>")
    good = crypto.signature("123", "n", encrypted)
    assert crypto.decrypt_message(encrypted, good, "123", "n") == "<xml/>"
    with pytest.raises(InvalidSignatureError):
        crypto.decrypt_message(encrypted, good, "124", "n")
    other = MessageCrypto("tok", AES_KEY, "wxOTHER")
    with pytest.raises(InvalidAppIdError):
        other.decrypt(encrypted)
    with pytest.raises(WeChatCryptoError):
        crypto.decrypt("not base64!!")


def test_encrypted_reply_envelope_verifies():
    crypto = MessageCrypto("tok", AES_KEY, "wxapp")
    envelope = parse_xml(crypto.encrypt_message("<xml><Content>hi</Content></xml>", nonce="abc", timestamp="99"))
    assert envelope["TimeStamp"] == "99" and envelope["Nonce"] == "abc"
    assert envelope["MsgSignature"] == compute_signature("tok", "99", "abc", envelope["Encrypt"])
    assert crypto.decrypt(envelope["Encrypt"]) == "<xml><Content>hi</Content></xml>"
