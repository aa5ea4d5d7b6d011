"""ABC tunes read straight from music21's ABC tokens, without building music21 streams.

``converter.parse`` turns each tune into a Score of Measures, beams it and pickles it; the corpus
stage then expands repeats and strips ties on deep copies: 0.05 to 1 s of CPU a tune, nearly all
of it spent on objects the melody never uses. Here music21's own ``ABCHandler`` still reads the
text (pitches with key and accidentals, lengths with broken rhythm and tuplets, ties, bars,
voices), and its tokens are laid out following ``abcFormat.translate.abcToStreamPart``,
``translate.reBar``, ``Stream.expandRepeats`` and ``Stream.stripTies`` rule for rule; repeats are
expanded by music21's own ``repeat.Expander`` on a skeleton of empty bars. So the notes are those
of the music21 path (tests/test_corpus.py compares them) at a few ms a tune; the rare tune with a
chord across an overfull bar's line is left to the music21 path.
"""

import copy
import functools
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

from music21 import abcFormat, common, duration, harmony, metadata, meter, note, pitch, repeat, spanner, stream
from music21.bar import Barline, Repeat
from music21.exceptions21 import StreamException

NO_CHORD = ("NC", "N.C.", "No Chord", "None")
# Ties of the two halves of a note split at a bar line, by the note's own tie (base.splitAtQuarterLength).
SPLIT_TIES = {
    None: ("start", "stop"),
    "start": ("start", "continue"),
    "stop": ("continue", "stop"),
    "continue": ("continue", "continue"),
}


@dataclass
class Item:
    """A note, chord or rest as music21 would build it from one token."""

    offset: Fraction  # quarter notes from the start of its bar (or of the tune, without bars)
    length: Fraction  # quarter notes; 0 for a grace note
    pitches: tuple  # music21 Pitch objects, shared and never changed; () for a rest
    chord: bool
    tie: str | None


@dataclass
class Bar:
    items: list[Item] = field(default_factory=list)
    length: Fraction = Fraction(0)
    signature: object = None  # the bar's music21 TimeSignature, if it sets one
    left: Barline | None = None  # bar lines as abcToStreamPart sets them on the Measure
    right: Barline | None = None


@dataclass
class Bracket:
    """A first or second ending: abcToStreamPart's RepeatBracket, over bars."""

    number: int
    bars: list[Bar]
    complete: bool = False


@dataclass
class AbcMelody:
    """One tune's first voice: its title, time signatures (in score order) and notes."""

    title: str | None
    signatures: list
    bars: list[Bar]  # empty when the tune does not define bars
    loose: Bar  # notes outside bars (a tune without bar lines)
    brackets: list[Bracket]
    transposition: int  # semitones, from a clef such as ``treble-8``

    def flat(self) -> tuple[list[tuple], Fraction | None, Fraction]:
        """Repeats expanded and ties merged: ([(onset, end, top MIDI pitch)], first bar's length, tune's length)."""
        bars = [self.bars[i] for i in _expansion(self.bars, self.brackets)] if self.bars else [self.loose]
        # Exact Fractions where a tuplet needs them; floats (exact too, and 5x faster) for lengths in 1/2^k.
        number = float if all(_dyadic(item.length) for bar in bars for item in bar.items) else Fraction
        placed, start = [], Fraction(0)
        for bar in bars:  # expandRepeats lays the bars end to end
            base = number(start)
            placed += [(base + number(item.offset), number(item.length), item) for item in bar.items]
            start += bar.length
        return _notes(placed, self.transposition), bars[0].length if self.bars else None, start


def _dyadic(x: Fraction) -> bool:
    return x.denominator & (x.denominator - 1) == 0


def _expansion(bars: list[Bar], brackets: list[Bracket]) -> list[int]:
    """Bar indices in playing order: music21's repeat.Expander's, remembered by the repeat structure it reads."""
    index = {id(bar): i for i, bar in enumerate(bars)}
    key = (
        tuple((_describe(bar.left), _describe(bar.right)) for bar in bars),
        tuple((rb.number, tuple(index[id(bar)] for bar in rb.bars)) for rb in brackets),
    )
    if key not in _EXPANSIONS:
        _EXPANSIONS[key] = _expand(bars, brackets) if any(any(sides) for sides in key[0]) else list(range(len(bars)))
    return _EXPANSIONS[key]


def _expand(bars: list[Bar], brackets: list[Bracket]) -> list[int]:
    """repeat.Expander on a Part of empty Measures with the bars' bar lines and brackets."""
    part, measures, position = stream.Part(), [], Fraction(0)
    for i, bar in enumerate(bars):  # empty, but in place: the expansion orders bars by offset
        measures.append(Skeleton(str(i), bar.left, bar.right))
        part.coreInsert(common.opFrac(position), measures[-1])
        position += bar.length
    index = {id(bar): i for i, bar in enumerate(bars)}
    for bracket in brackets:
        rb = spanner.RepeatBracket(measures[index[id(bracket.bars[0])]])
        rb.number = bracket.number
        rb.addSpannedElements([measures[index[id(bar)]] for bar in bracket.bars[1:]])
        part.coreInsert(0, rb)
    part.coreElementsChanged()
    try:  # no deep copy: the part is used once; the expansion copies the bars it repeats
        expanded = repeat.Expander(part).process(deepcopy=False)
        return [int(m.id) for m in expanded.getElementsByClass(stream.Measure)]
    except Exception:  # noqa: BLE001 - malformed repeat marks: the music21 path keeps the notated order too
        return list(range(len(bars)))


def _describe(barline: Barline | None) -> tuple | None:
    """What the repeat expansion reads of a bar line."""
    if barline is None:
        return None
    return type(barline).__name__, barline.type, getattr(barline, "direction", None), getattr(barline, "times", None)


_EXPANSIONS: dict = {}  # most tunes share a few forms (AABB, first and second endings...): 72% hits


class Skeleton(stream.Measure):
    """An empty Measure standing for a bar in the repeat expansion, which copies every bar it
    passes: this copy keeps only what the expansion reads (id, number, bar lines), 3x faster."""

    def __init__(self, bar_id: str, left: Barline | None = None, right: Barline | None = None):
        super().__init__()
        self.id = bar_id
        if left is not None:
            self.leftBarline = _copy_barline(left)
        if right is not None:
            self.rightBarline = _copy_barline(right)

    def __deepcopy__(self, memo=None):
        new = Skeleton(self.id, self.leftBarline, self.rightBarline)
        new.number, new.numberSuffix = self.number, self.numberSuffix
        new.derivation.origin, new.derivation.method = self, "__deepcopy__"
        return new


def _copy_barline(barline: Barline) -> Barline:
    if isinstance(barline, Repeat):
        return Repeat(direction=barline.direction, times=barline.times)
    return Barline(barline.type)


def read_file(path: str | Path) -> list[abcFormat.ABCHandler]:
    """The tunes of an ABC file, tokenised as ``converter.parse`` does, in its order."""
    abc_file = abcFormat.ABCFile()
    abc_file.open(path)
    try:
        handler = abc_file.read()
    finally:
        abc_file.close()
    if handler.definesReferenceNumbers():
        tunes = handler.splitByReferenceNumber()
        return [tunes[number] for number in sorted(tunes)]
    return [handler]


def melody(handler: abcFormat.ABCHandler) -> AbcMelody | None:
    """The tune of ``handler`` (one reference number), or None where it needs music21's full path."""
    title = next((t.data for t in handler.tokens if isinstance(t, abcFormat.ABCMetadata) and t.isTitle()), None)
    if title is not None:  # as abcToStreamScore stores it: music21 moves an article ("Grassy Turf, The")
        md = metadata.Metadata()
        md.add("title", title)
        title = md.title
    voices = handler.splitByVoice()
    part = voices[0] if len(voices) == 1 else voices[0] + voices[1]
    handlers = abcFormat.mergeLeadingMetaData(part.splitByMeasure()) if part.definesMeasures() else [part]
    use_measures = len(handlers) > 1
    bars, brackets, loose, loose_signatures, transposition = [], [], Bar(), [], 0
    for bar_handler in handlers:
        if use_measures and bar_handler.hasNotes():
            bar = _bar(bar_handler, brackets)
            bars.append(bar)
        else:
            bar = loose
        transposition = 0  # as in abcToStreamPart: the last bar's clef wins
        for token in bar_handler.tokens:
            if isinstance(token, abcFormat.ABCMetadata):
                if token.isMeter() and (ts := _signature(token)) is not None:
                    if bar is not loose:
                        bar.signature = ts
                    elif use_measures:  # Part.timeSignature = ts replaces the one at offset 0
                        loose_signatures[:] = [ts]
                    else:
                        loose_signatures.append(ts)
                elif token.isKey():
                    clef, shift = token.getClefObject()
                    if clef is not None and shift is not None:
                        transposition = shift
            elif isinstance(token, abcFormat.ABCNote) and (item := _item(token, bar.length)) is not None:
                bar.items.append(item)
                bar.length += item.length
    bars = _rebar(bars)
    if bars is None:
        return None
    signatures = loose_signatures + [bar.signature for bar in bars if bar.signature is not None]
    complete = [rb for rb in brackets if rb.complete]
    return AbcMelody(title, signatures, bars, loose, complete, transposition)


def _bar(bar_handler: abcFormat.ABCHandlerBar, brackets: list[Bracket]) -> Bar:
    """An empty bar with the bar lines and repeat brackets that abcToStreamPart gives its Measure."""
    bar = Bar()
    left, right = bar_handler.leftBarToken, bar_handler.rightBarToken
    if left is not None:
        bar.left = left.getBarObject()
        if number := left.isRepeatBracket():
            open_brackets = [rb for rb in brackets if not rb.complete]
            if not open_brackets:
                rb = Bracket(number, [bar])
                brackets.append(rb)
            else:
                rb = open_brackets[0]
                rb.bars.append(bar)
                rb.complete = True
            if number == 2:
                rb.complete = True
    if right is not None:
        bar.right = right.getBarObject()
        if right.isRepeat():
            open_brackets = [rb for rb in brackets if not rb.complete]
            if open_brackets:
                open_brackets[0].bars.append(bar)
                open_brackets[0].complete = True
    return bar


def _item(token: abcFormat.ABCNote, offset: Fraction) -> Item | None:
    """The note, chord or rest of translate.parseABCNote, or None where it adds none."""
    if token.chordSymbols and not _chord_symbol_kept(token.chordSymbols[0]):
        return None  # a fingering diagram: parseABCNote drops the note with it
    if isinstance(token, abcFormat.ABCChord):
        if not token.subTokens:
            return None
        names = tuple(t.pitchName for t in token.subTokens if isinstance(t, abcFormat.ABCNote))
        return Item(offset, _length(token.quarterLength, token.activeTuplet), _pitches(names), True, None)
    pitches = () if token.isRest else _pitches((token.pitchName,))
    length = Fraction(0) if token.inGrace else _length(token.quarterLength, token.activeTuplet)
    return Item(offset, length, pitches, False, token.tie)


@functools.lru_cache(maxsize=4096)
def _chord_symbol_kept(symbol: str) -> bool:
    """False for a chord symbol that makes parseABCNote drop its note (one starting with '>')."""
    name = common.cleanedFlatNotation(re.sub("[()]", "", re.sub('"', "", symbol).strip()))
    if name in NO_CHORD:
        return True
    if name.startswith(">"):
        return False
    try:  # other errors than ValueError fail the tune in music21 too: let them out
        harmony.ChordSymbol(name)
    except ValueError:
        pass
    return True


def _signature(token: abcFormat.ABCMetadata):
    """The token's TimeSignature, shared by equal tokens (they are slow to build and never changed here)."""
    if token.data not in _SIGNATURES:
        _SIGNATURES[token.data] = token.getTimeSignatureObject()
    return _SIGNATURES[token.data]


_SIGNATURES: dict = {}


@functools.lru_cache(maxsize=4096)
def _pitches(names: tuple[str, ...]) -> tuple:
    return tuple(pitch.Pitch(name) for name in names)


def _length(quarter_length: float, tuplet) -> Fraction:
    if tuplet is None:
        return Fraction(common.opFrac(quarter_length))
    d = duration.Duration(quarter_length)
    tuplet = copy.deepcopy(tuplet)
    if tuplet.durationNormal is None:
        tuplet.setDurationType(d.type, d.dots)
    d.appendTuplet(tuplet)
    return Fraction(d.quarterLength)


def _rebar(bars: list[Bar]) -> list[Bar] | None:
    """translate.reBar on our bars: an overfull bar is split at the bar length, its rest getting
    its own best-fitting time signature; None where a chord crosses the split (left to music21)."""
    out, last = [], None
    for index, bar in enumerate(bars):  # reBar visits the bars as written, not the halves it adds
        last = bar.signature if bar.signature is not None else last
        length = Fraction(last.barDuration.quarterLength) if last is not None else None
        if length is None or bar.length <= length:
            out.append(bar)
            if length is None:  # reBar raises and abcToStreamPart carries on: the rest stays as written
                return out + bars[index + 1 :]
            continue
        tail = _split(bar, length)
        if tail is None:
            return None
        out.append(bar)
        if tail.length != length:
            try:
                tail.signature = _measure_of(tail).bestTimeSignature()
            except (StreamException, meter.MeterException, ZeroDivisionError):
                return out + bars[index + 1 :]  # reBar fails here: the rest of this bar is lost, as in music21
            if index != len(bars) - 1 and bars[index + 1].signature is None:
                bars[index + 1].signature = last
        out.append(tail)
    return out


def _split(bar: Bar, at: Fraction) -> Bar | None:
    """Cut ``bar`` at ``at`` quarter notes as Measure.splitAtQuarterLength does (a note across is tied):
    the bar keeps the first part, the second is returned; None (and the bar unchanged) for a chord across."""
    head, tail = [], Bar(length=bar.length - at, left=bar.right)  # the right bar line moves to the tail's left
    for item in bar.items:
        end = item.offset + item.length
        if item.offset >= at:
            tail.items.append(replace(item, offset=item.offset - at))
        elif end <= at:
            head.append(item)
        elif item.chord:
            return None
        else:
            ties = SPLIT_TIES[item.tie] if item.pitches else (item.tie, item.tie)
            head.append(replace(item, length=at - item.offset, tie=ties[0]))
            tail.items.append(replace(item, offset=Fraction(0), length=end - at, tie=ties[1]))
    bar.items, bar.length, bar.right = head, at, None
    return tail


def _measure_of(bar: Bar) -> stream.Measure:
    """A Measure of notes and rests as long as the bar's, for Measure.bestTimeSignature."""
    m = stream.Measure()
    for item in bar.items:
        if item.length:
            element = note.Note(quarterLength=item.length) if item.pitches else note.Rest(quarterLength=item.length)
            m.insert(common.opFrac(item.offset), element)
    return m


def _notes(placed: list[tuple], transposition: int) -> list[tuple]:
    """(onset, end, top MIDI pitch) of the notes and chords of [(onset, length, item)], ties merged
    as Stream.stripTies does."""
    sounding = [(offset, length, item) for offset, length, item in placed if length > 0]
    lengths = [length for _, length, _ in sounding]
    for chain in _tie_chains([item for *_, item in sounding]):
        lengths[chain[0]] += sum(lengths[i] for i in chain[1:])
        for i in chain[1:]:
            lengths[i] = None
    return [
        (offset, offset + length, max(p.midi for p in item.pitches) + transposition)
        for (offset, _, item), length in zip(sounding, lengths)
        if length is not None and (item.chord or item.pitches)  # a chord of no notes fails, as in music21
    ]


def _tie_chains(items: list[Item]) -> list[list[int]]:
    """Index chains that Stream.stripTies (matchByPitch=True) merges into their first note."""
    chains, connected = [], []
    for i, n in enumerate(items):
        end = None
        if n.tie == "start":
            connected = connected + [i] if i > 0 and i - 1 in connected else [i]
            end = False
        elif n.tie == "continue":
            if connected and _ends_tie(items, i, connected):
                connected.append(i)
            else:
                connected = [i]
            end = False
        if end is None:
            end = _ends_tie(items, i, connected)
        if end:
            connected.append(i)
            if len(connected) >= 2:
                chains.append(connected)
            connected = []
    return chains


def _ends_tie(items: list[Item], i: int, connected: list[int]) -> bool:
    """stripTies' updateEndMatch: a stop tie, or the same pitch as a connected previous note."""
    n = items[i]
    if not n.chord and n.tie == "stop":
        return True
    if i == 0 or i - 1 not in connected:
        return False
    last = items[i - 1]
    if not n.chord and not last.chord and n.pitches and last.pitches:
        return last.pitches[0] == n.pitches[0]
    if not n.chord and n.pitches:  # a Note after a Chord
        return False
    if len(last.pitches) != len(n.pitches):
        return False
    return all(a.step == b.step and a.isEnharmonic(b) for a, b in zip(last.pitches, n.pitches))
