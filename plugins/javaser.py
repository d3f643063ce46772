"""A small, bounded reader of Java object serialisation, enough for FreeOTP 2 backups.

FreeOTP 2's ``externalBackup.xml`` is ``ObjectOutputStream.writeObject(HashMap<String,
String>)``. This parses that stream as *data* (Java Object Serialization Specification
§6.4): strings, string references, a HashMap's custom ``writeObject`` data, and — so
that a map holding something else (``restoreComplete = Boolean.TRUE``) does not break
the pairing of keys and values — plain serialisable objects with primitive and object
fields, which become :class:`JavaObject` values. Nothing is instantiated or executed.

Every length is checked against the bytes left, nesting is bounded, and any problem is
a :class:`JavaSerError` (the caller turns it into a FormatError).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

MAGIC = b"\xac\xed\x00\x05"
TC_NULL, TC_REFERENCE, TC_CLASSDESC, TC_OBJECT, TC_STRING = 0x70, 0x71, 0x72, 0x73, 0x74
TC_BLOCKDATA, TC_ENDBLOCKDATA, TC_LONGSTRING, TC_BLOCKDATALONG = 0x77, 0x78, 0x7C, 0x7A
BASE_HANDLE = 0x7E0000
SC_WRITE_METHOD, SC_SERIALIZABLE = 0x01, 0x02
MAX_DEPTH = 16
MAX_MAP_SIZE = 100_000
#: field type code -> struct format (big-endian) of its value
_PRIMITIVES = {"B": ">b", "C": ">H", "D": ">d", "F": ">f", "I": ">i", "J": ">q", "S": ">h", "Z": ">?"}


class JavaSerError(ValueError):
    """The stream is not (or not only) what this reader understands; the text names no data."""


@dataclass
class ClassDesc:
    name: str
    flags: int
    fields: list[tuple[str, str]]  # (type code, name)
    superclass: ClassDesc | None


@dataclass
class JavaObject:
    """A deserialised object other than a string or a HashMap: its class name and fields."""

    class_name: str
    fields: dict[str, Any] = field(default_factory=dict)


def decode_modified_utf8(data: bytes) -> str:
    """Java's modified UTF-8: NUL as ``C0 80``, characters above U+FFFF as two surrogates."""
    try:
        text = data.replace(b"\xc0\x80", b"\x00").decode("utf-8", "surrogatepass")
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeError:
        raise JavaSerError("a string is not valid modified UTF-8") from None


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.handles: list[Any] = []

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise JavaSerError("the stream ends early (truncated)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def utf(self) -> str:
        return decode_modified_utf8(self.take(self.unpack(">H")))

    def new_handle(self, value: Any) -> int:
        self.handles.append(value)
        return len(self.handles) - 1

    def reference(self) -> Any:
        index = self.unpack(">I") - BASE_HANDLE
        if not 0 <= index < len(self.handles) or self.handles[index] is None:
            raise JavaSerError("a back-reference points nowhere")
        return self.handles[index]

    # -- grammar ---------------------------------------------------------------------------
    def class_desc(self, depth: int) -> ClassDesc | None:
        tc = self.u8()
        if tc == TC_NULL:
            return None
        if tc == TC_REFERENCE:
            desc = self.reference()
            if not isinstance(desc, ClassDesc):
                raise JavaSerError("a class reference points to something else")
            return desc
        if tc != TC_CLASSDESC:
            raise JavaSerError(f"unsupported class descriptor (type code 0x{tc:02x})")
        if depth > MAX_DEPTH:
            raise JavaSerError("classes are nested too deeply")
        name = self.utf()
        self.take(8)  # serialVersionUID
        handle = self.new_handle(None)
        flags = self.u8()
        count = self.unpack(">H")
        fields = []
        for _ in range(count):
            code = chr(self.u8())
            fname = self.utf()
            if code in "L[":
                self.object(depth + 1)  # the field's type name, a string
            elif code not in _PRIMITIVES:
                raise JavaSerError("a class has a field of unknown type")
            fields.append((code, fname))
        self.annotation(depth)
        desc = ClassDesc(name, flags, fields, None)
        self.handles[handle] = desc
        desc.superclass = self.class_desc(depth + 1)
        return desc

    def annotation(self, depth: int) -> list[Any]:
        """Block data and objects up to TC_ENDBLOCKDATA (class annotations, writeObject data)."""
        items: list[Any] = []
        while True:
            tc = self.data[self.pos] if self.pos < len(self.data) else None
            if tc is None:
                raise JavaSerError("the stream ends early (truncated)")
            if tc == TC_ENDBLOCKDATA:
                self.pos += 1
                return items
            if tc == TC_BLOCKDATA:
                self.pos += 1
                items.append(self.take(self.u8()))
            elif tc == TC_BLOCKDATALONG:
                self.pos += 1
                items.append(self.take(self.unpack(">I")))
            else:
                items.append(self.object(depth + 1))

    def object(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise JavaSerError("objects are nested too deeply")
        tc = self.u8()
        if tc == TC_NULL:
            return None
        if tc == TC_REFERENCE:
            return self.reference()
        if tc == TC_STRING:
            text = self.utf()
            self.new_handle(text)
            return text
        if tc == TC_LONGSTRING:
            text = decode_modified_utf8(self.take(self.unpack(">Q")))
            self.new_handle(text)
            return text
        if tc == TC_OBJECT:
            desc = self.class_desc(depth + 1)
            if desc is None:
                raise JavaSerError("an object has no class")
            if desc.name == "java.util.HashMap":
                return self.hashmap(desc, depth)
            return self.plain_object(desc, depth)
        raise JavaSerError(f"unsupported content (type code 0x{tc:02x})")

    def _field_values(self, desc: ClassDesc, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for code, name in desc.fields:
            if code in "L[":
                out[name] = self.object(depth + 1)
            else:
                out[name] = self.unpack(_PRIMITIVES[code])
        return out

    def plain_object(self, desc: ClassDesc, depth: int) -> JavaObject:
        obj = JavaObject(desc.name)
        self.new_handle(obj)
        chain = []
        cur: ClassDesc | None = desc
        while cur is not None:
            chain.append(cur)
            cur = cur.superclass
            if len(chain) > MAX_DEPTH:
                raise JavaSerError("class hierarchy too deep")
        for cls in reversed(chain):  # superclass data first
            if not cls.flags & SC_SERIALIZABLE:
                raise JavaSerError("an object is not of a serialisable class")
            obj.fields.update(self._field_values(cls, depth))
            if cls.flags & SC_WRITE_METHOD:
                self.annotation(depth)
        return obj

    def hashmap(self, desc: ClassDesc, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        self.new_handle(result)
        if desc.superclass is not None or not desc.flags & SC_WRITE_METHOD:
            raise JavaSerError("not the HashMap layout FreeOTP writes")
        self._field_values(desc, depth)  # loadFactor (and threshold)
        tc = self.u8()
        if tc != TC_BLOCKDATA:
            raise JavaSerError("the HashMap has no size block")
        block = self.take(self.u8())
        if len(block) != 8:
            raise JavaSerError("the HashMap size block has the wrong length")
        _capacity, size = struct.unpack(">ii", block)
        if not 0 <= size <= MAX_MAP_SIZE:
            raise JavaSerError("the HashMap size is implausible")
        for _ in range(size):
            key = self.object(depth + 1)
            value = self.object(depth + 1)
            if not isinstance(key, str):
                raise JavaSerError("a HashMap key is not a string")
            result[key] = value
        if self.u8() != TC_ENDBLOCKDATA:
            raise JavaSerError("the HashMap does not end where its size says")
        return result


def read_hashmap(data: bytes) -> dict[str, Any]:
    """The top-level ``HashMap`` of a Java serialisation stream (values: str, JavaObject, None…)."""
    if not data.startswith(MAGIC):
        raise JavaSerError("not a Java serialisation stream")
    reader = _Reader(data)
    reader.pos = len(MAGIC)
    top = reader.object(0)
    if not isinstance(top, dict):
        raise JavaSerError("the stream does not hold a java.util.HashMap")
    if reader.pos != len(data):
        raise JavaSerError("there are bytes after the HashMap")
    return top
