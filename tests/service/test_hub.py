"""The hub's frames: encoded once for every client, they must be what a WebSocket
client's parser reads back, whatever their length and however they are joined."""

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from trapsim.service.hub import frame

# Payload lengths around the three encodings of RFC 6455 §5.2: 7-bit, 16-bit, 64-bit.
LENGTHS = st.sampled_from([0, 1, 125, 126, 127, 65_535, 65_536, 70_000]) | st.integers(0, 300)


def read(data: bytes) -> list[Frame]:
    """The frames a client reads from ``data`` (unmasked, as a server sends)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            while True:
                next(parser)
        except StopIteration as done:
            frames.append(done.value)
    return frames


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=40), LENGTHS), min_size=1, max_size=5))
def test_joined_frames_read_back_as_the_messages(parts):
    texts = [head + "x" * n for head, n in parts]
    got = read(b"".join(frame(t) for t in texts))
    assert [(f.opcode, f.fin, f.data.decode()) for f in got] == [
        (Opcode.TEXT, True, t) for t in texts]


def test_text_and_bytes_give_the_same_frame():
    assert frame('{"op":"pong"}') == frame(b'{"op":"pong"}')
