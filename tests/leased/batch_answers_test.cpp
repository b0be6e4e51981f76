// netd's per-change statuses mapped back to the grants of a batch.
#include "leased/batch_answers.hpp"

#include <gtest/gtest.h>

#include <cerrno>

using wgd::leased::BatchAnswers;

TEST(BatchAnswers, ARefusedChangeFailsOnlyItsOwnPlanAcrossParts) {
    BatchAnswers a;
    a.sent({0, 1, 2});
    a.sent({3, BatchAnswers::kMaintenance});
    EXPECT_FALSE(a.complete());
    ASSERT_TRUE(a.answered({0, EDQUOT, 0}));
    EXPECT_FALSE(a.complete());
    ASSERT_TRUE(a.answered({0, EPERM}));
    EXPECT_TRUE(a.complete());
    EXPECT_FALSE(a.plan_failed(0));
    EXPECT_TRUE(a.plan_failed(1));
    EXPECT_FALSE(a.plan_failed(2));
    EXPECT_FALSE(a.plan_failed(3));
    EXPECT_EQ(a.failed_plans(), 1u);
    EXPECT_EQ(a.failed_maintenance(), 1u);
    EXPECT_EQ(a.first_error(), EDQUOT);
}

TEST(BatchAnswers, AnAnswerWithoutOneStatusPerChangeIsRefused) {
    BatchAnswers a;
    EXPECT_FALSE(a.answered({})); // nothing outstanding
    a.sent({0, 1});
    EXPECT_FALSE(a.answered({0}));
    EXPECT_FALSE(a.answered({0, 0, 0}));
    EXPECT_FALSE(a.complete());
    ASSERT_TRUE(a.answered({0, 0}));
    EXPECT_TRUE(a.complete());
    EXPECT_EQ(a.failed_plans(), 0u);
    EXPECT_EQ(a.first_error(), 0);
}
