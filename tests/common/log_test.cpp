// The pure parts of logging: which stderr is the journal, and what netd's
// relay makes of a child's datagram.
#include "common/log.hpp"

#include <gtest/gtest.h>

using namespace wgd;

TEST(JournalStream, MatchesOnlyTheDeviceAndInodeOfStderr) {
    EXPECT_TRUE(journal_stream_matches("8:12345", 8, 12345));
    EXPECT_FALSE(journal_stream_matches("8:12345", 8, 12346));
    EXPECT_FALSE(journal_stream_matches("9:12345", 8, 12345));
    EXPECT_FALSE(journal_stream_matches(nullptr, 8, 12345));
    EXPECT_FALSE(journal_stream_matches("", 8, 12345));
    EXPECT_FALSE(journal_stream_matches("8:12345x", 8, 12345));
    EXPECT_FALSE(journal_stream_matches("8", 8, 12345));
}

TEST(RelayedLine, PriorityPrefixGivesTheLevelAndIsRemoved) {
    EXPECT_EQ(parse_relayed_line("<3>lease file: cannot write\n").level, LogLevel::error);
    EXPECT_EQ(parse_relayed_line("<4>x").level, LogLevel::warning);
    EXPECT_EQ(parse_relayed_line("<6>x").level, LogLevel::info);
    EXPECT_EQ(parse_relayed_line("<7>x").level, LogLevel::debug);
    EXPECT_EQ(parse_relayed_line("<0>x").level, LogLevel::error);
    EXPECT_EQ(parse_relayed_line("<3>lease file: cannot write\n").text, "lease file: cannot write");
}

TEST(RelayedLine, NoOrBadPrefixIsInfoAndKeptAsText) {
    auto plain = parse_relayed_line("hello");
    EXPECT_EQ(plain.level, LogLevel::info);
    EXPECT_EQ(plain.text, "hello");
    auto bad = parse_relayed_line("<9>x");
    EXPECT_EQ(bad.level, LogLevel::info);
    EXPECT_EQ(bad.text, "<9>x");
}

TEST(RelayedLine, ControlBytesNewlinesAndNonAsciiBecomeQuestionMarks) {
    auto line = parse_relayed_line("<6>a\x1b[31mred\nwg-dynamic-server: forged\r\x7f\xc3\xa9\t");
    EXPECT_EQ(line.text, "a?[31mred?wg-dynamic-server: forged?????");
    EXPECT_EQ(parse_relayed_line(std::string_view("a\0b", 3)).text, "a?b");
}

TEST(RelayedLine, LongLineIsCut) {
    EXPECT_EQ(parse_relayed_line("<6>" + std::string(5000, 'x'), 1024).text.size(), 1024u);
}
