"""WeChat Official Account message signatures and AES message encryption.

Follows the 公众号 "消息加解密" specification (the same scheme wechatpy implements):

* URL/plaintext signature: ``sha1("".join(sorted([token, timestamp, nonce])))``.
* ``msg_signature``: ``sha1("".join(sorted([token, timestamp, nonce, encrypt])))``.
* AES-256-CBC, ``key = b64decode(EncodingAESKey + "=")``, ``iv = key[:16]``, PKCS#7
  padding to a multiple of **32** bytes; plaintext is ``random(16) + len(msg) as 4 bytes
  big-endian + msg + appid``; the ciphertext travels base64 encoded.

The ``cryptography`` package is used when installed; otherwise a small pure-Python AES
(FIPS-197) does the block work, so the connector runs without extra dependencies.
Messages are a few KB at most, so the slower fallback costs well under a millisecond
per block batch.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import string
import struct
import time
from typing import Callable

__all__ = [
    "InvalidAppIdError",
    "InvalidSignatureError",
    "MessageCrypto",
    "WeChatCryptoError",
    "check_signature",
    "compute_signature",
    "pkcs7_pad",
    "pkcs7_unpad",
]

BLOCK_SIZE = 32  # WeChat pads to 32 bytes, not AES's 16


class WeChatCryptoError(ValueError):
    """A message that cannot be verified or decrypted; the webhook answers 4xx."""


class InvalidSignatureError(WeChatCryptoError):
    pass


class InvalidAppIdError(WeChatCryptoError):
    pass


def compute_signature(*parts: str) -> str:
    """SHA1 over the lexicographically sorted parts, as WeChat signs requests."""
    return hashlib.sha1("".join(sorted(str(p) for p in parts)).encode("utf-8")).hexdigest()


def check_signature(signature: str | None, *parts: str) -> bool:
    """Constant-time comparison of a received signature with the expected one."""
    if not signature:
        return False
    # Bytes: compare_digest refuses non-ASCII str (a TypeError, i.e. a 500, found by fuzzing).
    return hmac.compare_digest(compute_signature(*parts).encode("ascii"), signature.lower().encode("utf-8"))


def pkcs7_pad(data: bytes, block_size: int = BLOCK_SIZE) -> bytes:
    amount = block_size - (len(data) % block_size)
    return data + bytes([amount]) * amount


def pkcs7_unpad(data: bytes, block_size: int = BLOCK_SIZE) -> bytes:
    if not data:
        raise WeChatCryptoError("Decrypted message is empty.")
    amount = data[-1]
    if amount < 1 or amount > block_size or amount > len(data):
        raise WeChatCryptoError("Decrypted message has invalid PKCS#7 padding.")
    return data[:-amount]


# --- AES-CBC: `cryptography` when present, else pure Python -------------------------------

def _cbc_with_cryptography(key: bytes) -> tuple[Callable[[bytes, bytes], bytes], Callable[[bytes, bytes], bytes]] | None:
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:
        return None

    def encrypt(iv: bytes, data: bytes) -> bytes:
        enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        return enc.update(data) + enc.finalize()

    def decrypt(iv: bytes, data: bytes) -> bytes:
        dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        return dec.update(data) + dec.finalize()

    return encrypt, decrypt


def _xtime(a: int) -> int:
    a <<= 1
    return (a ^ 0x1B) & 0xFF if a & 0x100 else a


def _build_tables() -> tuple[list[int], list[int], list[list[int]], list[list[int]]]:
    # S-box from the multiplicative inverse in GF(2^8) plus the affine map (FIPS-197 5.1.1).
    sbox = [0] * 256
    p = q = 1
    while True:
        p = p ^ _xtime(p)  # p * 3
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        x = q ^ ((q << 1) | (q >> 7)) ^ ((q << 2) | (q >> 6)) ^ ((q << 3) | (q >> 5)) ^ ((q << 4) | (q >> 4))
        sbox[p] = (x ^ 0x63) & 0xFF
        if p == 1:
            break
    sbox[0] = 0x63
    inv = [0] * 256
    for i, v in enumerate(sbox):
        inv[v] = i

    def mul(a: int, b: int) -> int:
        r = 0
        while b:
            if b & 1:
                r ^= a
            a = _xtime(a)
            b >>= 1
        return r

    te = [[0] * 256 for _ in range(4)]
    td = [[0] * 256 for _ in range(4)]
    for i in range(256):
        s = sbox[i]
        w = (mul(s, 2) << 24) | (s << 16) | (s << 8) | mul(s, 3)
        si = inv[i]
        d = (mul(si, 14) << 24) | (mul(si, 9) << 16) | (mul(si, 13) << 8) | mul(si, 11)
        for r in range(4):
            te[r][i] = ((w >> (8 * r)) | (w << (32 - 8 * r))) & 0xFFFFFFFF
            td[r][i] = ((d >> (8 * r)) | (d << (32 - 8 * r))) & 0xFFFFFFFF
    return sbox, inv, te, td


_TABLES: tuple[list[int], list[int], list[list[int]], list[list[int]]] | None = None


def _tables() -> tuple[list[int], list[int], list[list[int]], list[list[int]]]:
    global _TABLES
    if _TABLES is None:
        _TABLES = _build_tables()
    return _TABLES


class _PureAES:
    """AES block cipher (128/192/256-bit keys) with encryption and decryption T-tables."""

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise WeChatCryptoError("AES key must be 16, 24 or 32 bytes.")
        sbox, _, _, td = _tables()
        nk = len(key) // 4
        self.rounds = nk + 6
        w = list(struct.unpack(f">{nk}I", key))
        rcon = 1
        for i in range(nk, 4 * (self.rounds + 1)):
            t = w[i - 1]
            if i % nk == 0:
                t = ((t << 8) | (t >> 24)) & 0xFFFFFFFF
                t = (sbox[t >> 24] << 24) | (sbox[(t >> 16) & 0xFF] << 16) | (sbox[(t >> 8) & 0xFF] << 8) | sbox[t & 0xFF]
                t ^= rcon << 24
                rcon = _xtime(rcon)
            elif nk > 6 and i % nk == 4:
                t = (sbox[t >> 24] << 24) | (sbox[(t >> 16) & 0xFF] << 16) | (sbox[(t >> 8) & 0xFF] << 8) | sbox[t & 0xFF]
            w.append(w[i - nk] ^ t)
        self.ek = [w[4 * r: 4 * r + 4] for r in range(self.rounds + 1)]
        # Equivalent inverse cipher: InvMixColumns applied to the middle round keys.
        dk = [self.ek[self.rounds]]
        for r in range(self.rounds - 1, 0, -1):
            dk.append([
                td[0][sbox[k >> 24]] ^ td[1][sbox[(k >> 16) & 0xFF]] ^ td[2][sbox[(k >> 8) & 0xFF]] ^ td[3][sbox[k & 0xFF]]
                for k in self.ek[r]
            ])
        dk.append(self.ek[0])
        self.dk = dk

    def _crypt(self, block: bytes, keys: list[list[int]], t: list[list[int]], box: list[int], shifts: tuple[int, int, int]) -> bytes:
        t0, t1, t2, t3 = t
        a, b, c = shifts
        s = [x ^ k for x, k in zip(struct.unpack(">4I", block), keys[0])]
        for r in range(1, self.rounds):
            k = keys[r]
            s = [
                t0[s[i] >> 24] ^ t1[(s[(i + a) % 4] >> 16) & 0xFF] ^ t2[(s[(i + b) % 4] >> 8) & 0xFF] ^ t3[s[(i + c) % 4] & 0xFF] ^ k[i]
                for i in range(4)
            ]
        k = keys[self.rounds]
        out = [
            ((box[s[i] >> 24] << 24) | (box[(s[(i + a) % 4] >> 16) & 0xFF] << 16)
             | (box[(s[(i + b) % 4] >> 8) & 0xFF] << 8) | box[s[(i + c) % 4] & 0xFF]) ^ k[i]
            for i in range(4)
        ]
        return struct.pack(">4I", *out)

    def encrypt_block(self, block: bytes) -> bytes:
        sbox, _, te, _ = _tables()
        return self._crypt(block, self.ek, te, sbox, (1, 2, 3))

    def decrypt_block(self, block: bytes) -> bytes:
        _, inv, _, td = _tables()
        return self._crypt(block, self.dk, td, inv, (3, 2, 1))


def _cbc_pure(key: bytes) -> tuple[Callable[[bytes, bytes], bytes], Callable[[bytes, bytes], bytes]]:
    aes = _PureAES(key)

    def encrypt(iv: bytes, data: bytes) -> bytes:
        out, prev = [], iv
        for i in range(0, len(data), 16):
            block = bytes(x ^ y for x, y in zip(data[i:i + 16], prev))
            prev = aes.encrypt_block(block)
            out.append(prev)
        return b"".join(out)

    def decrypt(iv: bytes, data: bytes) -> bytes:
        out, prev = [], iv
        for i in range(0, len(data), 16):
            block = data[i:i + 16]
            out.append(bytes(x ^ y for x, y in zip(aes.decrypt_block(block), prev)))
            prev = block
        return b"".join(out)

    return encrypt, decrypt


def aes_cbc(key: bytes, prefer_native: bool = True) -> tuple[Callable[[bytes, bytes], bytes], Callable[[bytes, bytes], bytes]]:
    """``(encrypt(iv, data), decrypt(iv, data))`` without padding."""
    native = _cbc_with_cryptography(key) if prefer_native else None
    return native or _cbc_pure(key)


# --- the WeChat envelope --------------------------------------------------------------------

_NONCE_ALPHABET = string.ascii_letters + string.digits


def random_nonce(length: int = 10) -> str:
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(length))


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte key from the 43-character EncodingAESKey; ValueError when malformed."""
    if len(encoding_aes_key) != 43:
        raise ValueError(f"EncodingAESKey must be 43 characters, got {len(encoding_aes_key)}.")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("EncodingAESKey is not valid base64.") from e
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes.")
    return key


class MessageCrypto:
    """Encrypts replies and decrypts pushes for one Official Account (``app_id``)."""

    def __init__(self, token: str, encoding_aes_key: str, app_id: str, prefer_native: bool = True) -> None:
        self.token = token
        self.app_id = app_id
        self.key = decode_aes_key(encoding_aes_key)
        self.iv = self.key[:16]
        self.prefer_native = prefer_native
        self._encrypt, self._decrypt = aes_cbc(self.key, prefer_native)

    def __getstate__(self) -> dict:
        # Sanic pickles the app for its worker processes; cipher closures are rebuilt.
        return {k: v for k, v in self.__dict__.items() if k not in ("_encrypt", "_decrypt")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._encrypt, self._decrypt = aes_cbc(self.key, self.prefer_native)

    # raw envelope
    def encrypt(self, text: str, random_prefix: bytes | None = None) -> str:
        msg = text.encode("utf-8")
        prefix = random_prefix if random_prefix is not None else os.urandom(16)
        plain = prefix + struct.pack(">I", len(msg)) + msg + self.app_id.encode("utf-8")
        return base64.b64encode(self._encrypt(self.iv, pkcs7_pad(plain))).decode("ascii")

    def decrypt(self, encrypted: str) -> str:
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as e:
            raise WeChatCryptoError("Encrypted message is not valid base64.") from e
        if not data or len(data) % 16:
            raise WeChatCryptoError("Encrypted message length is not a multiple of the AES block.")
        plain = pkcs7_unpad(self._decrypt(self.iv, data))
        if len(plain) < 20:
            raise WeChatCryptoError("Decrypted message is too short.")
        (length,) = struct.unpack(">I", plain[16:20])
        if 20 + length > len(plain):
            raise WeChatCryptoError("Decrypted message length field exceeds the payload.")
        msg = plain[20:20 + length]
        from_app_id = plain[20 + length:].decode("utf-8", errors="replace")
        if not hmac.compare_digest(from_app_id.encode(), self.app_id.encode()):
            raise InvalidAppIdError(f"Message was encrypted for app id '{from_app_id}', not this account.")
        try:
            return msg.decode("utf-8")
        except UnicodeDecodeError as e:
            raise WeChatCryptoError("Decrypted message is not UTF-8.") from e

    # signed messages
    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return compute_signature(self.token, timestamp, nonce, encrypted)

    def decrypt_message(self, encrypted: str, msg_signature: str | None, timestamp: str, nonce: str) -> str:
        """Verify ``msg_signature`` over the ``Encrypt`` field, then decrypt it."""
        if not check_signature(msg_signature, self.token, timestamp, nonce, encrypted):
            raise InvalidSignatureError("msg_signature does not match the encrypted message.")
        return self.decrypt(encrypted)

    def encrypt_message(self, xml: str, nonce: str | None = None, timestamp: str | None = None) -> str:
        """The encrypted passive-reply envelope WeChat expects in safe/compatible mode."""
        from connectors.wechat.messages import render_encrypted_envelope

        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or random_nonce()
        encrypted = self.encrypt(xml)
        return render_encrypted_envelope(encrypted, self.signature(timestamp, nonce, encrypted), timestamp, nonce)
